// kgrec page: hash routes #/search/TEXT, #/product/ID, #/user/ID over the JSON API.
// Every text from the catalogue goes in through textContent, never as HTML.
"use strict";

const view = document.getElementById("view");
const statusLine = document.getElementById("status");
const graphs = []; // live cytoscape instances, destroyed when the view changes

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function filterParams() {
  const params = new URLSearchParams();
  const pairs = [["brand", "f-brand"], ["category", "f-category"],
                 ["min_price", "f-min"], ["max_price", "f-max"]];
  for (const [name, id] of pairs) {
    const value = document.getElementById(id).value.trim();
    if (value) params.set(name, value);
  }
  if (document.getElementById("f-catalogue").checked) params.set("in_catalogue", "true");
  return params;
}

async function getJson(path, params = new URLSearchParams()) {
  const query = params.toString();
  const response = await fetch(query ? `${path}?${query}` : path);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(`${response.status}: ${detail || response.statusText}`);
  }
  return body;
}

function clearView() {
  while (graphs.length) graphs.pop().destroy();
  view.replaceChildren();
}

function productLink(id, title) {
  return el("a", { href: `#/product/${encodeURIComponent(id)}`, class: "title", text: title || id });
}

// The answer's explanation paths merged into one small graph: query side left, answer right.
function drawExplanation(container, paths) {
  const nodes = new Map();
  const edges = new Map();
  for (const path of paths) {
    path.nodes.forEach((node, i) => {
      const key = `${node.label}:${node.id}`;
      if (!nodes.has(key)) {
        const name = node.name || node.id;
        nodes.set(key, { data: { id: key, label: name.length > 28 ? `${name.slice(0, 27)}…` : name,
                                 kind: node.label, order: i } });
      }
    });
    path.rels.forEach((hop, i) => {
      const a = `${path.nodes[i].label}:${path.nodes[i].id}`;
      const b = `${path.nodes[i + 1].label}:${path.nodes[i + 1].id}`;
      const [source, target] = hop.forward ? [a, b] : [b, a];
      edges.set(`${source}|${hop.type}|${target}`,
                { data: { id: `${source}|${hop.type}|${target}`, source, target, label: hop.type } });
    });
  }
  const cy = cytoscape({
    container,
    elements: [...nodes.values(), ...edges.values()],
    layout: { name: "breadthfirst", directed: true, spacingFactor: 0.9, padding: 8 },
    userZoomingEnabled: false,
    style: [
      { selector: "node", style: { label: "data(label)", "font-size": 8, width: 12, height: 12,
                                   "background-color": "#1a4fb5", "text-wrap": "wrap",
                                   "text-max-width": 90 } },
      { selector: "node[kind != 'Product']", style: { "background-color": "#d48a1b", shape: "round-rectangle" } },
      { selector: "node[kind = 'User']", style: { "background-color": "#2f8a4a" } },
      { selector: "edge", style: { label: "data(label)", "font-size": 6, width: 1,
                                   "curve-style": "bezier", "target-arrow-shape": "triangle",
                                   "arrow-scale": 0.6, "line-color": "#9aa3b5",
                                   "target-arrow-color": "#9aa3b5" } },
    ],
  });
  graphs.push(cy);
  container.dataset.nodes = String(cy.nodes().length);
  container.dataset.edges = String(cy.edges().length);
}

function pathText(path) {
  const name = (node) => (node.label === "Product" ? `"${node.name || node.id}"` : `${node.label} "${node.name || node.id}"`);
  let text = name(path.nodes[0]);
  path.rels.forEach((hop, i) => {
    text += hop.forward ? ` —${hop.type}→ ` : ` ←${hop.type}— `;
    text += name(path.nodes[i + 1]);
  });
  return text;
}

// Cards go into the page before their graphs are drawn: cytoscape needs a sized container.
function renderAnswers(parent, results, draw = true) {
  const list = el("div", { class: "answers" });
  parent.append(list);
  if (!results.length) list.append(el("p", { class: "hint", text: "No answers with these filters." }));
  for (const result of results) {
    const card = el("article", { class: "answer", "data-id": result.product_id });
    card.append(productLink(result.product_id, result.title));
    let score = `score ${result.score.toFixed(3)}`;
    if (result.objectives) {  // per-objective scores, where the model has them
      score += " · " + Object.entries(result.objectives)
        .map(([name, value]) => `${name} ${Number(value).toFixed(3)}`).join(" · ");
    }
    card.append(el("span", { class: "score", text: score }));
    list.append(card);
    if (!result.explanations.length) {
      card.append(el("span", { class: "score", text: "no explanation" }));
      continue;
    }
    const why = el("ul", { class: "why" });
    for (const path of result.explanations) why.append(el("li", { text: pathText(path) }));
    card.append(why);
    if (draw) {
      const graph = el("div", { class: "graph" });
      card.append(graph);
      drawExplanation(graph, result.explanations);
    }
  }
}

async function showSearch(text) {
  document.getElementById("search-text").value = text;
  const params = filterParams();
  params.set("q", text);
  params.set("k", "20");
  const answer = await getJson("/search", params);
  clearView();
  view.append(el("h2", { text: `Search: ${text}` }));
  renderAnswers(view, answer.results, false); // search reasons are one hop: text is enough
}

async function showProduct(id) {
  const params = filterParams();
  params.set("k", "10");
  const [product, answer] = await Promise.all([
    getJson(`/products/${encodeURIComponent(id)}`),
    getJson(`/related/${encodeURIComponent(id)}`, params),
  ]);
  clearView();
  const head = el("div", { class: "product-head", "data-id": product.id });
  head.append(el("h1", { text: product.title || product.id }));
  const facts = [`id ${product.id}`];
  if (product.brand) facts.push(`brand ${product.brand}`);
  if (product.categories.length) facts.push(`categories ${product.categories.join(", ")}`);
  if (product.price !== null) facts.push(`price ${product.price}`);
  head.append(el("div", { class: "meta", text: facts.join(" · ") }));
  if (product.description) head.append(el("p", { text: product.description }));
  view.append(head, el("h2", { text: "Related products" }));
  renderAnswers(view, answer.results);
}

async function showUser(id) {
  document.getElementById("user-id").value = id;
  const params = filterParams();
  params.set("k", "10");
  const [history, answer] = await Promise.all([
    getJson(`/users/${encodeURIComponent(id)}/history`),
    getJson(`/recommend/${encodeURIComponent(id)}`, params),
  ]);
  clearView();
  view.append(el("h1", { text: `User ${id}` }));
  view.append(el("h2", { text: "Recent history" }));
  const past = el("div", { class: "history" });
  for (const item of history.items) past.append(productLink(item.id, item.title));
  view.append(past, el("h2", { text: "Recommended" }));
  renderAnswers(view, answer.results);
}

async function route() {
  const [, kind, ...rest] = location.hash.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  statusLine.textContent = "loading…";
  try {
    if (kind === "search" && arg) await showSearch(arg);
    else if (kind === "product" && arg) await showProduct(arg);
    else if (kind === "user" && arg) await showUser(arg);
    statusLine.textContent = "";
  } catch (error) {
    clearView();
    view.append(el("p", { class: "error", text: error.message }));
    statusLine.textContent = "";
  }
}

document.getElementById("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = document.getElementById("search-text").value.trim();
  if (text) location.hash = `#/search/${encodeURIComponent(text)}`;
});
document.getElementById("user-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = document.getElementById("user-id").value.trim();
  if (id) location.hash = `#/user/${encodeURIComponent(id)}`;
});
document.getElementById("f-apply").addEventListener("click", route);
window.addEventListener("hashchange", route);
route();
