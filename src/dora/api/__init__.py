"""The API server: FastAPI app (`dora.api.app`), services, routers and wire schemas."""
