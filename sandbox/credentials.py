"""The credentials the sandbox accepts (and prints), one place for all four APIs."""

from __future__ import annotations

GIS_ACCESS_TOKEN = "sandbox-gis-token"
GIS_REFRESH_TOKEN = "sandbox-gis-refresh"
GIS_CLIENT_ID = "sandbox-gis-client"
GIS_CLIENT_SECRET = "sandbox-gis-secret"
GIS_HOME_LC_ID = 1340

CUSTOMERIO_SITE_ID = "sandbox-site"
CUSTOMERIO_API_KEY = "sandbox-track-key"
# customer.io workspaces the sandbox serves, each with its own people and events: the
# fleet's tests point it at a second one to see a new workspace start from nothing.
CUSTOMERIO_WORKSPACES = {CUSTOMERIO_SITE_ID: CUSTOMERIO_API_KEY,
                         "sandbox-site-2": "sandbox-track-key-2"}

SEGMENT_ACCESS_TOKEN = "sandbox-segment-token"
SEGMENT_SPACE_ID = "spa_sandbox"

VOUCHERIFY_APPLICATION_ID = "sandbox-app-id"
VOUCHERIFY_SECRET_KEY = "sandbox-secret-key"

# Env vars of the fleet that take a credential, with their sandbox value.
CREDENTIAL_ENV: dict[str, str] = {
    "GIS_ACCESS_TOKEN": GIS_ACCESS_TOKEN,
    "GIS_REFRESH_TOKEN": GIS_REFRESH_TOKEN,
    "GIS_CLIENT_ID": GIS_CLIENT_ID,
    "GIS_CLIENT_SECRET": GIS_CLIENT_SECRET,
    "GIS_HOME_LC_ID": str(GIS_HOME_LC_ID),
    "CUSTOMERIO_SITE_ID": CUSTOMERIO_SITE_ID,
    "CUSTOMERIO_API_KEY": CUSTOMERIO_API_KEY,
    "SEGMENT_ACCESS_TOKEN": SEGMENT_ACCESS_TOKEN,
    "SEGMENT_SPACE_ID": SEGMENT_SPACE_ID,
    "VOUCHERIFY_APPLICATION_ID": VOUCHERIFY_APPLICATION_ID,
    "VOUCHERIFY_SECRET_KEY": VOUCHERIFY_SECRET_KEY,
}


def env_for(url: str) -> dict[str, str]:
    """Every env var that points the fleet at a sandbox served at `url`."""
    url = url.rstrip("/")
    return {
        **CREDENTIAL_ENV,
        "GIS_API_URL": f"{url}/gis",
        "GIS_AUTH_URL": f"{url}/gis/oauth/token",
        "CUSTOMERIO_TRACK_URL": f"{url}/customerio",
        "SEGMENT_PROFILES_URL": f"{url}/segment",
        "VOUCHERIFY_API_URL": f"{url}/voucherify",
    }
