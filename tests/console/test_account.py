"""Account journeys in Chromium: generate and see the result, save it, buy a pack through
Stripe Checkout and watch the webhook credit it, download the ledger as CSV."""

from __future__ import annotations

import csv
import re
import uuid

import httpx
import psycopg
from playwright.sync_api import expect

from tests.console.conftest import WEBHOOK_SECRET, ConsoleStack, as_user, owner
from tests.service.apiutil import stripe_event, stripe_header


def test_generate_an_image_see_it_save_it_and_find_it_in_the_gallery(stack: ConsoleStack) -> None:
    user_id, email = stack.user()
    page = stack.signed_in(user_id, email)
    expect(page.locator("#balance")).to_have_text(f"{stack.balance(user_id):,}")

    page.get_by_role("link", name="Generate").click()
    page.get_by_label("Model").select_option("sd15")
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
    page.get_by_label("Width").fill("256")
    page.get_by_label("Height").fill("256")
    # The live quote is the SQL quote for exactly these params.
    [quoted] = owner(
        stack.db,
        "select (creditgate.quote('sd15', '{\"prompt\": \"a lighthouse at dusk\","
        " \"width\": 256, \"height\": 256}') ->> 'cost')::bigint as cost",
    )
    expect(page.locator("#quote")).to_have_text(f"{quoted['cost']} credits")
    page.get_by_role("button", name="Generate").click()

    page.wait_for_url(re.compile(r"/console/generations/[0-9a-f-]{36}$"))
    expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)
    image = page.locator("figure.media img")
    expect(image).to_have_count(1)
    # The browser really loaded the signed URL: the image decoded with its real size.
    assert page.evaluate("() => document.querySelector('figure.media img').naturalWidth") == 256
    generation_id = page.url.rsplit("/", 1)[1]
    [row] = owner(stack.db, "select status, cost from creditgate.generations where id = %s", [generation_id])
    assert row == {"status": "succeeded", "cost": quoted["cost"]}

    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/console/gallery\?notice=saved$"))
    expect(page.get_by_role("status")).to_contain_text("Saved to your gallery")
    item = page.locator(f'[data-generation="{generation_id}"]')
    expect(item.locator("img")).to_have_count(1)
    expect(item.locator(".badge")).to_have_text("Saved")
    [media] = owner(stack.db, "select saved from creditgate.media where generation_id = %s", [generation_id])
    assert media["saved"] is True

    item.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text("Deleted")
    expect(page.locator(f'[data-generation="{generation_id}"] img')).to_have_count(0)


def test_a_gif_and_chat_text_are_shown(stack: ConsoleStack) -> None:
    user_id, email = stack.user()
    stack.grant(user_id, 5000)
    page = stack.signed_in(user_id, email)

    page.goto(f"{stack.url}/console/generate?model=animatediff")
    page.get_by_label("Prompt", exact=True).fill("waves rolling in")
    page.get_by_label("Width").fill("128")
    page.get_by_label("Height").fill("128")
    page.get_by_label("Duration (seconds)").fill("1")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)
    gif = page.locator("figure.media img")
    expect(gif).to_have_count(1)
    assert page.evaluate("() => document.querySelector('figure.media img').naturalWidth") == 128
    src = gif.get_attribute("src")
    assert src is not None
    assert httpx.get(src).headers["content-type"] == "image/gif"

    page.goto(f"{stack.url}/console/generate?model=local-chat")
    page.get_by_label("Prompt", exact=True).fill("Say hello")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#status")).to_have_text("succeeded", timeout=60_000)
    generation_id = page.url.rsplit("/", 1)[1]
    [row] = owner(stack.db, "select output ->> 'text' as text from creditgate.generations where id = %s", [generation_id])
    assert row["text"]
    expect(page.locator("#chat-output")).to_have_text(row["text"])


def test_buy_a_pack_then_the_signed_webhook_credits_it(stack: ConsoleStack) -> None:
    user_id, email = stack.user()
    page = stack.signed_in(user_id, email)
    before = stack.balance(user_id)
    [pack] = owner(
        stack.db,
        "select id, name, credits, stripe_price_id from creditgate.credit_packs"
        " where active order by price_cents, id limit 1",
    )
    page.get_by_role("button", name=f"Buy {pack['name']}").click()
    page.wait_for_url(re.compile(r"/pay/cs_test_"))
    expect(page.get_by_role("heading")).to_contain_text("Pay cs_test_")

    [session] = [s for s in stack.stripe.sessions if s.get("client_reference_id") == user_id]
    assert session["mode"] == "payment"
    assert session["line_items[0][price]"] == pack["stripe_price_id"]
    assert session["line_items[0][quantity]"] == "1"
    assert session["metadata[user_id]"] == user_id
    assert session["metadata[price_id]"] == pack["stripe_price_id"]
    assert session["payment_intent_data[metadata][credits]"] == str(pack["credits"])
    assert session["success_url"].startswith(f"{stack.url}/console/")
    assert session["_idempotency_key"]

    # Stripe redirects back after payment and, separately, delivers the signed event.
    page.goto(f"{stack.url}/console/?notice=checkout_success")
    expect(page.locator("#balance")).to_have_text(f"{before:,}")
    payload = stripe_event(
        "checkout.session.completed",
        {
            "id": session["_id"],
            "object": "checkout.session",
            "client_reference_id": user_id,
            "payment_status": "paid",
            "metadata": {"user_id": user_id, "price_id": pack["stripe_price_id"], "quantity": "1"},
        },
    )
    response = httpx.post(
        f"{stack.url}/v1/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": stripe_header(payload, WEBHOOK_SECRET), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    page.reload()
    expect(page.locator("#balance")).to_have_text(f"{before + pack['credits']:,}")
    assert stack.balance(user_id) == before + pack["credits"]


def test_ledger_pages_and_csv_match_the_database(stack: ConsoleStack) -> None:
    user_id, email = stack.user()
    admin_id, _ = stack.user(admin=True)
    # 30 admin grants: more than one page of the ledger (25) in the browser.
    for i in range(30):
        reason = "=1+1 looks like a formula" if i == 0 else f"grant {i}"
        as_user(
            stack.db,
            admin_id,
            "select creditgate.admin_add_credits(%s, %s, %s, %s)",
            [user_id, i + 1, reason, f"csv-test-{user_id}-{i}"],
        )
    page = stack.signed_in(user_id, email)
    page.get_by_role("link", name="Ledger").click()
    rows = page.locator("#ledger tbody tr")
    expect(rows).to_have_count(25)
    page.get_by_role("link", name="Older entries").click()
    expect(rows).to_have_count(6)  # 31 entries: the signup bonus and 30 grants

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download all as CSV").click()
    download = download_info.value
    assert download.suggested_filename == "ledger.csv"
    path = download.path()
    assert path is not None
    with open(path, newline="", encoding="utf-8") as handle:
        parsed = list(csv.DictReader(handle))
    expected = owner(
        stack.db,
        "select id, entry_type, amount, delta, balance_after, reason from creditgate.ledger"
        " where user_id = %s order by id desc",
        [user_id],
    )
    assert len(parsed) == len(expected) == 31
    for got, want in zip(parsed, expected, strict=True):
        assert int(got["id"]) == want["id"]
        assert got["entry_type"] == want["entry_type"]
        assert int(got["amount"]) == want["amount"]
        assert int(got["delta"]) == want["delta"]
        assert int(got["balance_after"]) == want["balance_after"]
        # A reason that starts like a formula stays text in a spreadsheet.
        reason = want["reason"] or ""
        assert got["reason"] == ("'" + reason if reason.startswith("=") else reason)
    assert sum(int(r["delta"]) for r in parsed) == stack.balance(user_id)


def test_balance_page_shows_expiring_credits_and_anything_owed(stack: ConsoleStack) -> None:
    user_id, email = stack.user()
    with psycopg.connect(stack.db.owner_url) as conn, conn.transaction():
        conn.execute("select tests.as_service()")
        conn.execute(
            "select creditgate.service_grant_credits(%s, 321, 'grant', %s,"
            " expires_at => now() + interval '5 days')",
            [user_id, f"expiring-{user_id}"],
        )
        # A dispute of more than the user has: the rest is owed (where get_balance reports it).
        conn.execute(
            "select creditgate.service_clawback(%s, %s, 5000, 'dispute')", [f"evt_owed_{user_id}", user_id]
        )
    balance = as_user(stack.db, user_id, "select creditgate.get_balance()")
    page = stack.signed_in(user_id, email)
    expect(page.locator("#balance")).to_have_text(f"{balance['balance']:,}")
    expiring = page.get_by_role("region", name="Expiring in the next 30 days")
    expect(expiring.locator("tbody tr")).to_have_count(len(balance["expiring"]))
    for lot in balance["expiring"]:
        expect(expiring).to_contain_text(f"{lot['amount']:,}")
    if balance.get("owed"):
        expect(page.locator("#owed")).to_have_text(f"{balance['owed']:,}")
        expect(page.locator("main")).to_contain_text("new credits pay this first")
    else:
        expect(page.locator("#owed")).to_have_count(0)


def test_errors_are_shown_in_words_from_the_api_error_codes(stack: ConsoleStack) -> None:
    user_id, email = stack.user()
    page = stack.signed_in(user_id, email)
    page.goto(f"{stack.url}/console/generate?model=animatediff")
    page.get_by_label("Prompt", exact=True).fill("a very long clip")
    page.get_by_label("Duration (seconds)").fill("6")
    [quoted] = owner(
        stack.db,
        "select (creditgate.quote('animatediff', '{\"prompt\": \"a very long clip\","
        " \"duration_seconds\": 6}') ->> 'cost')::bigint as cost",
    )
    expect(page.locator("#quote")).to_have_text(f"{quoted['cost']} credits")
    with page.expect_response(lambda r: r.url.endswith("/console/generate")) as info:
        page.get_by_role("button", name="Generate").click()
    assert info.value.status == 402  # the API's status for insufficient_credits
    alert = page.get_by_role("alert")
    expect(alert).to_have_attribute("data-code", "insufficient_credits")
    expect(alert).to_have_text(
        f"This needs {quoted['cost']} credits and you have {stack.balance(user_id)} available. "
        "Buy a pack to continue."
    )
    # An invalid value names the field in words, live in the quote and after submitting.
    page.get_by_label("Duration (seconds)").fill("60")
    expect(page.locator("#quote-error")).to_contain_text("The duration is not accepted")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("alert")).to_contain_text("The duration is not accepted")
    expect(page.get_by_role("alert")).to_have_attribute("data-code", "invalid_request")
    response = page.goto(f"{stack.url}/console/generations/{uuid.uuid4()}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("alert")).to_have_text(
        "We could not find that. It may have been deleted, or it belongs to another account."
    )
