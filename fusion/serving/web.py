"""The browser page `kgrec serve` shows at `/`: search, a product with its related items, a user
with recommendations and the history they came from, each answer's explanation drawn as a small
graph. Static files ship inside the package (cytoscape.js vendored, nothing from a CDN); the
page reads the same JSON API as any client, plus the two lookups below."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from fusion.serving.recommender import UnknownIdError
from fusion.serving.service import Service
from kg.schema import Product

STATIC = Path(__file__).with_name("web")
# A user's page shows their most recent items only.
HISTORY_SHOWN = 20


class ProductInfo(BaseModel):
    id: str
    title: str
    description: str
    brand: str | None
    categories: list[str]
    price: float | None
    in_catalogue: bool

    @classmethod
    def of(cls, product: Product) -> ProductInfo:
        return cls(
            id=product.id,
            title=product.title,
            description=product.description[:500],
            brand=product.brand,
            categories=product.categories,
            price=product.price,
            in_catalogue=product.in_catalogue,
        )


class UserHistory(BaseModel):
    user: str
    items: list[ProductInfo]  # most recent last


def mount_web(app: FastAPI, service: Service) -> None:
    """Add the page (`/`, `/static/…`) and its product and user lookups to `app`, answered by
    `service`'s current recommender."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/products/{product_id:path}", responses={404: {"description": "Unknown product"}})
    async def product(product_id: str) -> ProductInfo:
        """One product's attributes (what its page shows above its related items)."""
        async with service.using() as rec:
            found = rec.products.get(product_id)
            if found is None:
                read = await run_in_threadpool(rec.store.get_products, [product_id])
                found = read.get(product_id)
        if found is None:
            raise UnknownIdError("product", product_id)
        return ProductInfo.of(found)

    @app.get("/users/{user_id:path}/history", responses={404: {"description": "Unknown user"}})
    async def history(user_id: str) -> UserHistory:
        """The user's most recent products, oldest first (what recommendations start from)."""
        async with service.using() as rec:
            items = await run_in_threadpool(rec.view.user_items, user_id)
            if items is None:
                raise UnknownIdError("user", user_id)
            recent = list(dict.fromkeys(reversed(items)))[:HISTORY_SHOWN][::-1]
            known = {pid: rec.products.get(pid) for pid in recent}
        return UserHistory(
            user=user_id,
            items=[ProductInfo.of(p or Product(pid)) for pid, p in known.items()],
        )
