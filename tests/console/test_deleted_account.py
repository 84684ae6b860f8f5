"""The console after the signed-in user's account is deleted (issue 17 item 6).

GoTrue deletes the user (as supabase_auth_admin) while their console session cookie is
still valid. Every console route then answers that the session has ended (401), never a
500 and never the erased data.
"""

from __future__ import annotations

import httpx
import psycopg

from tests.console.conftest import ConsoleStack, owner


def test_every_console_route_refuses_a_deleted_accounts_session(stack: ConsoleStack) -> None:
    user_id, email = stack.user(admin=True)
    media_id = str(owner(stack.db, "select tests.media_for(%s) as id", [user_id])[0]["id"])
    generation_id = str(
        owner(stack.db, "select generation_id from creditgate.media where id = %s", [media_id])[0][
            "generation_id"
        ]
    )
    page = stack.signed_in(user_id, email)
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert token

    with psycopg.connect(stack.db.admin_url, autocommit=True) as conn, conn.transaction():
        conn.execute("set local role supabase_auth_admin")
        assert conn.execute("delete from auth.users where id = %s", [user_id]).rowcount == 1

    gets = [
        "/console/", "/console/generate", f"/console/generations/{generation_id}",
        f"/console/generations/{generation_id}/status", "/console/gallery", "/console/ledger",
        "/console/ledger.csv", "/console/admin", "/console/admin/users", "/console/admin/models",
        "/console/admin/settings", "/console/admin/audit",
    ]
    posts = [
        "/console/buy", "/console/generate", "/console/quote", f"/console/media/{media_id}/save",
        f"/console/media/{media_id}/delete", f"/console/admin/users/{user_id}/grant",
        "/console/admin/models/img-test", "/console/admin/settings", "/console/admin/audit",
    ]
    with httpx.Client(base_url=stack.url, cookies=cookies, timeout=30) as client:
        for path in gets:
            response = client.get(path)
            assert response.status_code == 401, (path, response.status_code, response.text[:300])
            assert "Your session has ended" in response.text, path
            assert "test media" not in response.text, path
        for path in posts:
            response = client.post(path, data={"csrf_token": token})
            assert response.status_code == 401, (path, response.status_code, response.text[:300])
    assert stack.balance(user_id) == 0
