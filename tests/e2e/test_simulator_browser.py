"""The web phone in a real headless chromium against the real app on gunicorn (demo settings).

A new member dials from an unregistered number, registers through the menus,
sees the member number on the phone and the welcome SMS in the inbox, dials
again, enters the PIN and sees the balances. Everything goes through the page's
JavaScript and the real ``POST /ussd``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from db.models import Member, UssdSessionEvent
from tests.e2e.browser import chromium, require_chromium
from tests.e2e.servers import gunicorn, run_manage

NEW_PHONE = "+254700000123"
PIN = "4713"
WAIT_S = 20


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('browser') / 'demo.db'}"


@pytest.fixture(scope="module")
def demo_server(demo_db: str) -> Iterator[str]:
    require_chromium()  # fail fast, with the install command, before starting anything
    env = {"SACCO_ENV": "demo", "DATABASE_URL": demo_db}
    run_manage(["migrate"], env)
    with gunicorn(env) as base:
        yield base


def session_ends(db_url: str, msisdn: str) -> list[tuple[str, int | None]]:
    """The session-end notifications the app stored for a phone: (status, hops)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(UssdSessionEvent.status, UssdSessionEvent.hops_count)
                .where(UssdSessionEvent.msisdn == msisdn)
                .order_by(UssdSessionEvent.id)
            )
            return [(r[0], r[1]) for r in rows]
    finally:
        engine.dispose()


class WebPhone:
    """What a trainee does on the page: type or tap keys, press Call/Send/End, read."""

    def __init__(self, driver: Any) -> None:
        from selenium.webdriver.common.by import By

        self.driver, self.by = driver, By

    def el(self, element_id: str) -> Any:
        return self.driver.find_element(self.by.ID, element_id)

    def wait(self, predicate: Any, what: str) -> Any:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        # The page re-renders a list (the inbox) while it is read: a stale element is
        # "not yet", read again, not a failure.
        return WebDriverWait(
            self.driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)
        ).until(predicate, message=what)

    def screen(self) -> str:
        return str(self.el("screen").text)

    def _settled(self) -> bool:
        return self.el("status").text not in ("waiting…", "idle")

    def _press_and_wait(self, button: str) -> str:
        self.driver.execute_script("document.getElementById('screen').dataset.kind = '';")
        self.el(button).click()
        self.wait(
            lambda d: self.el("screen").get_attribute("data-kind") and self._settled(),
            f"an answer on the screen after pressing {button}",
        )
        return self.screen()

    def set_number(self, msisdn: str) -> None:
        field = self.el("phone")
        field.clear()
        field.send_keys(msisdn)

    def call(self) -> str:
        return self._press_and_wait("call")

    def tap(self, keys: str) -> str:
        """Tap keypad keys, then Send."""
        for key in keys:
            self.driver.find_element(self.by.CSS_SELECTOR, f'.key[data-key="{key}"]').click()
        return self._press_and_wait("send")

    def type(self, text: str) -> str:
        """Type into the input field, then Send."""
        self.el("entry").send_keys(text)
        return self._press_and_wait("send")

    def inbox(self) -> list[str]:
        return [li.text for li in self.driver.find_elements(self.by.CSS_SELECTOR, "#inbox li")]


def test_a_new_member_registers_sees_the_sms_and_then_the_balances(
    demo_server: str, demo_db: str
) -> None:
    with chromium() as driver:
        driver.get(f"{demo_server}/simulator")  # type: ignore[attr-defined]
        phone = WebPhone(driver)
        phone.set_number(NEW_PHONE)

        assert "Choose language" in phone.call()
        assert "Enter your full name" in phone.tap("1")
        assert "national ID" in phone.type("Jane Achieng")
        assert "1. I agree" in phone.type("29876543")
        assert "Choose a 4-digit PIN" in phone.tap("1")
        assert "Enter the PIN again" in phone.tap(PIN)
        done = phone.tap(PIN)

        # The screen is the same whether or not the ID was on file: the number comes by SMS.
        assert "we will SMS your member number" in done
        engine = create_engine(demo_db)
        try:
            with engine.connect() as conn:
                member_number = str(
                    conn.execute(
                        select(Member.member_number).where(Member.msisdn == NEW_PHONE)
                    ).scalar_one()
                )
        finally:
            engine.dispose()
        assert phone.el("screen").get_attribute("data-kind") == "END"
        assert phone.el("status").text == "ended"
        phone.wait(  # the page told the app the session ended, as the gateway does
            lambda d: session_ends(demo_db, NEW_PHONE) == [("Success", 7)],
            "the Success session-end notification",
        )

        phone.wait(
            lambda d: any(member_number in sms for sms in phone.inbox()),
            "the welcome SMS in the inbox",
        )
        welcome = next(sms for sms in phone.inbox() if member_number in sms)
        assert "Welcome to Umoja SACCO, Jane" in welcome

        menu = phone.call()  # a new dial: the member's main menu now
        assert "1. Check balances" in menu
        assert "Enter your PIN" in phone.tap("1")
        balances = phone.tap(PIN)
        assert re.search(r"^Savings KES 0\b", balances, re.M), balances
        assert re.search(r"^Shares KES 0\b", balances, re.M), balances
        assert int(phone.el("chars").text) == len("CON " + balances) <= 160

        phone.el("end").click()  # hang up mid-menu
        phone.wait(lambda d: phone.el("status").text == "incomplete", "hang-up")


def test_the_page_needs_nothing_from_outside_the_app(demo_server: str) -> None:
    """Every script, style and request of the page is served by the app itself."""
    with chromium() as driver:
        driver.get(f"{demo_server}/simulator")  # type: ignore[attr-defined]
        urls = driver.execute_script(  # type: ignore[attr-defined]
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
    assert urls, "the page loaded its script and style"
    assert all(u.startswith(demo_server) for u in urls), urls


def test_the_api_docs_render_with_nothing_from_outside_the_app(demo_server: str) -> None:
    """Swagger UI at /api/v1/docs draws the API on a network without internet: its scripts
    and styles come from the app (swagger-ui-bundle), not from a CDN."""
    with chromium() as driver:
        driver.get(f"{demo_server}/api/v1/docs")  # type: ignore[attr-defined]
        page = WebPhone(driver)  # only its waiting and finding
        title = page.wait(
            lambda d: d.find_element(page.by.CSS_SELECTOR, ".swagger-ui .info .title"),
            "Swagger UI's title",
        )
        assert "back office API" in title.text
        page.wait(
            lambda d: "/api/v1/auth/login" in d.find_element(page.by.TAG_NAME, "body").text,
            "the operations listed",
        )
        urls = driver.execute_script(  # type: ignore[attr-defined]
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
    assert any(u.endswith("/api/v1/openapi.json") for u in urls), urls
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls), urls
    assert all(u.startswith(demo_server) for u in urls), urls


def test_hanging_up_mid_registration_is_offered_as_a_resume_on_the_next_call(
    demo_server: str, demo_db: str
) -> None:
    """End posts the gateway's Incomplete notification: the next Call offers to continue."""
    with chromium() as driver:
        driver.get(f"{demo_server}/simulator")  # type: ignore[attr-defined]
        phone = WebPhone(driver)
        phone.set_number("+254700000124")
        phone.call()
        phone.tap("1")
        phone.type("Paul Otieno")
        assert "1. I agree" in phone.type("29876544")

        phone.el("end").click()
        phone.wait(lambda d: phone.el("status").text == "incomplete", "hang-up")
        phone.wait(
            lambda d: session_ends(demo_db, "+254700000124") == [("Incomplete", 4)],
            "the Incomplete session-end notification",
        )

        assert "Continue where you left off?" in phone.call()
        assert "1. I agree" in phone.tap("1")  # the name and ID typed before the drop are kept
