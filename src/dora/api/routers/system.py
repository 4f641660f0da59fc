"""Health, readiness, metrics, version and who-am-I."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from dora import __version__
from dora.api.deps import AUTH_RESPONSES, CallerDep, Ctx
from dora.api.schemas import VersionInfo, WhoAmI

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the store answers", responses={503: {}})
async def readyz(ctx: Ctx) -> JSONResponse:
    try:
        await ctx.store.head("")
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, 503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(ctx: Ctx) -> Response:
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/v1/version", summary="Server version (no token needed)")
async def version(ctx: Ctx) -> VersionInfo:
    return VersionInfo(server=__version__, zone=ctx.settings.zone)


@router.get("/v1/whoami", summary="The caller, their defaults and grants", responses=AUTH_RESPONSES)
async def whoami(ctx: Ctx, caller: CallerDep) -> WhoAmI:
    return WhoAmI(
        user=caller.name,
        workspace=caller.default_workspace(),
        zone=caller.user.default_zone or ctx.settings.zone,
        grants=[
            {"kind": g.kind, "zone": g.zone, "workspace": g.workspace, "role": g.role}
            for g in caller.user.grants
        ],
    )
