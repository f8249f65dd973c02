"""The password policy: Django's four standard validators, enforced at registration, in the
admin and on the logins seed_demo (and so .ci/serve) sets."""

from __future__ import annotations

import re
import secrets
from io import StringIO

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.helpers import assert_error, assert_success
from users.models import User

pytestmark = pytest.mark.django_db

REGISTER = "/api/v1/auth/register"
TOO_SHORT = "This password is too short. It must contain at least 8 characters."
TOO_COMMON = "This password is too common."
NUMERIC = "This password is entirely numeric."
SIMILAR = "The password is too similar to the username."


@pytest.mark.parametrize(
    ("username", "password", "messages"),
    [
        ("ada-learner", "password", [TOO_COMMON]),
        ("ada-learner", "12345678", [TOO_COMMON, NUMERIC]),
        ("ada-learner", "80357261", [NUMERIC]),
        ("ada-learner", "ada-learner1", [SIMILAR]),
        ("ada-learner", "qwerty123", [TOO_COMMON]),
    ],
)
def test_weak_password_is_400_listing_the_validators_messages(api, username, password, messages):
    # given a registration with a password the policy rejects
    body = {"username": username, "password": password}

    # when it is posted
    response = api.post(REGISTER, body, format="json")

    # then it is a validation error naming every failed rule, and nobody is created
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"password": messages}
    assert not User.objects.filter(username=username).exists()


def test_short_password_fails_on_length_before_the_policy_runs(api):
    response = api.post(REGISTER, {"username": "ada", "password": "x7!k"}, format="json")

    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"password": ["Ensure this field has at least 8 characters."]}


def test_strong_password_registers(api):
    response = api.post(
        REGISTER, {"username": "ada-learner", "password": "violet-tandem-42"}, format="json"
    )

    data = assert_success(response, 201)
    assert data["user"]["username"] == "ada-learner"
    assert User.objects.get(username="ada-learner").check_password("violet-tandem-42")


def test_admin_user_form_applies_the_policy(client):
    # given a staff member in the admin
    staff = User.objects.create_superuser(username="boss", password="staff-pass-Q9x")
    client.force_login(staff)

    # when they add a user with a common password
    response = client.post(
        "/admin/users/user/add/",
        {
            "username": "newbie",
            "password1": "password",
            "password2": "password",
            "usable_password": "true",
        },
    )

    # then the form is shown again with the validator's message, and nobody is created
    assert response.status_code == 200
    assert TOO_COMMON in response.context["adminform"].form.errors["password2"]
    assert not User.objects.filter(username="newbie").exists()


def seed() -> str:
    out = StringIO()
    call_command(
        "seed_demo",
        "--courses",
        "2",
        "--users",
        "3",
        "--enrollments",
        "2",
        "--submissions",
        "2",
        stdout=out,
    )
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_seed_demo_generated_passwords_pass_the_policy(monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)

    output = seed()

    for username in ("demo", "admin"):
        match = re.search(rf"username: {username}\s+password: (\S+)", output)
        assert match, output
        validate_password(match.group(1), User.objects.get(username=username))


@pytest.mark.django_db(transaction=True)
def test_seed_demo_accepts_a_password_generated_as_ci_serve_does(monkeypatch):
    # .ci/serve passes secrets.token_urlsafe(12) (kept in $STATE_DIR) as DEMO_PASSWORD
    generated = secrets.token_urlsafe(12)
    monkeypatch.setenv("DEMO_PASSWORD", generated)
    monkeypatch.setenv("ADMIN_PASSWORD", secrets.token_urlsafe(12))

    seed()

    assert User.objects.get(username="demo").check_password(generated)


@pytest.mark.django_db(transaction=True)
def test_seed_demo_refuses_a_weak_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "12345678")
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)

    with pytest.raises(CommandError) as raised:
        seed()

    assert str(raised.value) == f"DEMO_PASSWORD fails the password policy: {TOO_COMMON} {NUMERIC}"
    assert not User.objects.exists()
