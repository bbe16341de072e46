"""App-level endpoints: the App, installations, tokens, hook deliveries, manifest, rate limit."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from ghapp.simulator import accounts
from ghapp.simulator.clock import iso_z
from ghapp.simulator.http import ApiError, Call, Router, json_response, not_found
from ghapp.simulator.runs import Outgoing
from ghapp.simulator.state import APP_EVENTS, APP_PERMISSIONS
from ghapp.simulator.webhooks import Delivery

if TYPE_CHECKING:
    from ghapp.simulator.simulated import SimulatedGitHub

DELIVERIES_DOCS = "https://docs.github.com/rest/apps/webhooks"


def delivery_item(d: Delivery) -> dict[str, Any]:
    """A hook-delivery-item."""
    if d.ok:
        status = "OK"
    elif d.status is not None:
        status = f"Invalid HTTP Response: {d.status}"
    else:
        status = d.error or "failed to connect to host"
    return {
        "id": d.id,
        "guid": d.guid,
        "delivered_at": d.attempt_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "redelivery": d.redelivery,
        "duration": d.duration,
        "status": status,
        "status_code": d.status or 0,
        "event": d.event,
        "action": d.action,
        "installation_id": d.installation_id,
        "repository_id": d.repository_id,
        "throttled_at": None,
    }


def delivery_detail(d: Delivery) -> dict[str, Any]:
    """A hook-delivery: the item plus the request and the App's answer."""
    data = delivery_item(d)
    data["url"] = d.url or ""
    data["request"] = {"headers": dict(d.headers), "payload": d.payload}
    data["response"] = {"headers": dict(d.response_headers),
                        "payload": d.response_body if d.status is not None else None}
    return data


def register(router: Router, sim: SimulatedGitHub) -> None:
    """Add the App-level routes."""
    world = sim.world

    @router.route("GET", "/app", auth="jwt")
    async def get_app(call: Call) -> web.StreamResponse:
        return json_response(accounts.integration(world, APP_PERMISSIONS, APP_EVENTS))

    @router.route("GET", "/app/installations", auth="jwt")
    async def list_installations(call: Call) -> web.StreamResponse:
        found = sorted(world.installations.values(), key=lambda i: i.id)
        return json_response([accounts.installation(world, i) for i in found])

    @router.route("GET", "/app/installations/{installation_id}", auth="jwt")
    async def get_installation(call: Call) -> web.StreamResponse:
        inst = world.installations.get(call.int_param("installation_id"))
        if inst is None:
            raise not_found()
        return json_response(accounts.installation(world, inst))

    @router.route("POST", "/app/installations/{installation_id}/access_tokens", auth="jwt")
    async def create_token(call: Call) -> web.StreamResponse:
        inst = world.installations.get(call.int_param("installation_id"))
        if inst is None:
            raise not_found("https://docs.github.com/rest/apps/apps"
                            "#create-an-installation-access-token-for-an-app")
        if inst.suspended:
            raise ApiError(403, "This installation has been suspended")
        body = await call.body()
        repos = [r for r in world.repos.values() if r.installation_id == inst.id]
        chosen: set[str] | None = None
        names, ids = body.get("repositories"), body.get("repository_ids")
        if names or ids:
            wanted = {str(n).lower() for n in names or []}
            picked = [r for r in repos if r.name.lower() in wanted
                      or r.full_name.lower() in wanted or r.id in set(ids or [])]
            if len(picked) < len(wanted) + len(set(ids or [])):
                raise ApiError(422, "There is at least one repository that does not exist or "
                               "is not accessible to the parent installation.")
            chosen = {r.full_name for r in picked}
        permissions = dict(inst.permissions)
        asked = body.get("permissions")
        if isinstance(asked, dict):
            for key, level in asked.items():
                if key not in inst.permissions or (level == "write"
                                                   and inst.permissions[key] != "write"):
                    raise ApiError(422, "The permissions requested are not granted to this "
                                   "installation.")
            permissions = {str(k): str(v) for k, v in asked.items()}
        info = sim.tokens.issue(inst.id, sim.token_ttl, chosen, permissions)
        answer: dict[str, Any] = {
            "token": info.token,
            "expires_at": iso_z(int(info.expires)),
            "permissions": permissions,
            "repository_selection": "all" if chosen is None else "selected",
        }
        if chosen is not None:
            answer["repositories"] = [accounts.repository(world, r) for r in repos
                                      if r.full_name in chosen]
        return json_response(answer, 201)

    @router.route("GET", "/repos/{owner}/{repo}/installation", auth="jwt")
    async def repo_installation(call: Call) -> web.StreamResponse:
        repo = world.repo_of(call.params["owner"], call.params["repo"])
        if repo is None:
            raise not_found("https://docs.github.com/rest/apps/apps"
                            "#get-a-repository-installation-for-the-authenticated-app")
        inst = world.installations[repo.installation_id]
        return json_response(accounts.installation(world, inst))

    @router.route("GET", "/app/hook/deliveries", auth="jwt")
    async def list_deliveries(call: Call) -> web.StreamResponse:
        per_page, _ = call.page()
        found = sorted(sim.deliveries, key=lambda d: d.id, reverse=True)
        status = call.query("status")
        if status in ("success", "failure"):
            found = [d for d in found if d.ok == (status == "success")]
        cursor = call.query("cursor")
        if cursor:
            if not cursor.isdigit():
                raise ApiError(422, "Invalid cursor", DELIVERIES_DOCS)
            found = [d for d in found if d.id < int(cursor)]
        page = found[:per_page]
        headers = {}
        if len(found) > per_page:
            query = urlencode({"per_page": per_page, "cursor": page[-1].id})
            headers["Link"] = f'<{sim.api_url}/app/hook/deliveries?{query}>; rel="next"'
        return json_response([delivery_item(d) for d in page], headers=headers)

    def find_delivery(call: Call) -> Delivery:
        wanted = call.int_param("delivery_id")
        for d in sim.deliveries:
            if d.id == wanted:
                return d
        raise not_found(DELIVERIES_DOCS)

    @router.route("GET", "/app/hook/deliveries/{delivery_id}", auth="jwt")
    async def get_delivery(call: Call) -> web.StreamResponse:
        return json_response(delivery_detail(find_delivery(call)))

    @router.route("POST", "/app/hook/deliveries/{delivery_id}/attempts", auth="jwt")
    async def redeliver(call: Call) -> web.StreamResponse:
        d = find_delivery(call)
        outgoing = Outgoing(d.event, d.action, d.payload)
        sim.webhooks.enqueue(outgoing, guid=d.guid, redelivery=True)
        return json_response({}, 202)

    @router.route("POST", "/app-manifests/{code}/conversions", auth="none")
    async def convert_manifest(call: Call) -> web.StreamResponse:
        manifest = sim.manifest_codes.pop(call.params["code"], None)
        if manifest is None:
            raise not_found("https://docs.github.com/rest/apps/apps"
                            "#create-a-github-app-from-a-manifest")
        hook = manifest.get("hook_attributes")
        if isinstance(hook, dict) and hook.get("url") and hook.get("active", True):
            sim.webhook_url = str(hook["url"])
        data = accounts.integration(world, APP_PERMISSIONS, APP_EVENTS)
        if manifest.get("name"):
            data["name"] = str(manifest["name"])
        data.update(client_id=sim.client_id, client_secret=sim.client_secret,
                    webhook_secret=sim.webhook_secret, pem=sim.private_key_pem)
        return json_response(data, 201)

    async def manifest_form(call: Call) -> web.StreamResponse:
        form = await call.request.post()
        try:
            manifest = json.loads(str(form.get("manifest", "")))
        except ValueError:
            raise ApiError(422, "Invalid manifest") from None
        if not isinstance(manifest, dict) or not manifest.get("redirect_url"):
            raise ApiError(422, "The manifest needs a redirect_url")
        code = sim.manifest_code(manifest)
        query = {"code": code}
        if call.query("state"):
            query["state"] = call.query("state") or ""
        separator = "&" if "?" in str(manifest["redirect_url"]) else "?"
        location = f"{manifest['redirect_url']}{separator}{urlencode(query)}"
        return web.Response(status=302, headers={"Location": location})

    router.route("POST", "/settings/apps/new", auth="none")(manifest_form)
    router.route("POST", "/organizations/{org}/settings/apps/new", auth="none")(manifest_form)

    @router.route("GET", "/rate_limit", auth="any")
    async def rate_limit(call: Call) -> web.StreamResponse:
        key = f"inst:{call.installation_id}" if call.installation_id is not None else "app"
        bucket = sim.rate_limits.bucket(key)
        core = {"limit": bucket.limit, "remaining": bucket.remaining, "reset": bucket.reset,
                "used": bucket.used, "resource": "core"}
        search = {"limit": 30, "remaining": 30, "reset": bucket.reset, "used": 0,
                  "resource": "search"}
        return json_response({"resources": {"core": core, "search": search}, "rate": core})
