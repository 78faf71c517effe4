"""The web-admin (issue 13) in a real headless Chromium against the real
stack: NGINX with the module following Redis, RabbitMQ (read with pika),
the UI's static files served by NGINX next to the admin API. Each scenario
saves a screenshot under build/screenshots/."""

import json
import os
import time

import pytest
import requests

from web_helpers import (ADMIN_PW, VIEW_PW, Browser, Stack,  # noqa: F401
                         browser, stack)


def test_sign_in_and_a_wrong_password_is_refused(stack, browser):
    s = stack()
    b = browser()
    b.sign_in(s.ui, "root", "not-the-password", expect_ok=False)
    assert "refused" in b.text_in("#signin-error", "refused")
    assert not b.els("#signout")
    b.shot("signin-refused")

    b.sign_in(s.ui, "root", ADMIN_PW)
    assert b.el("#role").text == "admin"
    # the dashboard: the outgoing connection of the running configuration
    b.text_in('tr[data-outconn="out"] .state', "ready")
    b.shot("status")
    # every input of the page has a label
    for e in b.els("input, select, textarea"):
        if e.is_displayed():
            b.label_for(e)

    # sign out forgets the credentials
    b.el("#signout").click()
    b.el("#signin-username")
    assert b.d.execute_script("return sessionStorage.length") == 0
