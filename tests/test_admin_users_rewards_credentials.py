"""Django admin for users, tokens, rewards, idempotency records and credentials."""

from __future__ import annotations

import pytest
from django.test import Client

from credentials.models import Credential
from rewards.models import IdempotencyRecord, Reward
from tests.factories import CredentialFactory, RewardFactory, UserFactory
from tests.helpers import assert_success
from users.models import ApiToken, User

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff() -> Client:
    admin_user = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin_user)
    return client


def test_revoke_action_revokes_selected_and_the_api_shows_it_at_once(staff, user, auth_api):
    target, untouched = CredentialFactory(user=user), CredentialFactory(user=user)
    assert [i["revoked"] for i in assert_success(auth_api.get("/api/v1/credentials"))] == [
        False,
        False,
    ]

    response = staff.post(
        "/admin/credentials/credential/",
        {"action": "revoke_selected", "_selected_action": [str(target.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Revoked 1 credential(s)." in response.content.decode()
    target.refresh_from_db()
    untouched.refresh_from_db()
    assert (target.revoked, target.revoked_at is not None) == (True, True)
    assert (untouched.revoked, untouched.revoked_at) == (False, None)
    listed = {i["id"]: i["revoked"] for i in assert_success(auth_api.get("/api/v1/credentials"))}
    assert listed == {str(target.pk): True, str(untouched.pk): False}
    progress = assert_success(auth_api.get("/api/v1/users/me/progress"))
    assert progress["credentialsEarned"] == 1


def test_revoke_action_goes_through_model_save(staff, monkeypatch):
    credential = CredentialFactory()
    saved: list[list[str]] = []
    original_save = Credential.save

    def recording_save(self, *args, **kwargs):
        saved.append(sorted(kwargs.get("update_fields") or []))
        return original_save(self, *args, **kwargs)

    monkeypatch.setattr(Credential, "save", recording_save)

    staff.post(
        "/admin/credentials/credential/",
        {"action": "revoke_selected", "_selected_action": [str(credential.pk)]},
    )

    assert saved == [["revoked", "revoked_at"]]


def test_revoke_action_keeps_the_first_revocation_time(staff):
    credential = CredentialFactory()
    action = {"action": "revoke_selected", "_selected_action": [str(credential.pk)]}
    staff.post("/admin/credentials/credential/", action)
    first = Credential.objects.get(pk=credential.pk).revoked_at

    response = staff.post("/admin/credentials/credential/", action, follow=True)

    assert first is not None
    assert Credential.objects.get(pk=credential.pk).revoked_at == first
    assert "Revoked 0 credential(s)." in response.content.decode()


def test_credits_are_read_only_in_the_user_change_form(staff):
    learner = UserFactory(display_name="Before")
    User.objects.filter(pk=learner.pk).update(credits=40)
    url = f"/admin/users/user/{learner.pk}/change/"

    page = staff.get(url)
    form = page.context["adminform"].form
    assert "credits" not in form.fields
    assert "display_name" in form.fields
    assert "40" in page.content.decode()

    post = staff.post(
        url,
        {
            "username": learner.username,
            "display_name": "After",
            "background": "",
            "learning_goal": "",
            "pace": "fast",
            "language": "en",
            "credits": "999999",
            "is_active": "on",
            "date_joined_0": "2024-01-01",
            "date_joined_1": "00:00:00",
        },
    )

    assert post.status_code == 302, post.context["adminform"].form.errors if post.context else ""
    learner.refresh_from_db()
    assert (learner.display_name, learner.pace, learner.credits) == ("After", "fast", 40)


def test_admin_can_add_a_user(staff):
    response = staff.post(
        "/admin/users/user/add/",
        {
            "username": "newbie",
            "password1": "s3cret-pass-X",
            "password2": "s3cret-pass-X",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302
    assert User.objects.get(username="newbie").check_password("s3cret-pass-X")


def test_reward_admin_is_view_only(staff):
    reward = RewardFactory()

    change = staff.get(f"/admin/rewards/reward/{reward.pk}/change/")
    add = staff.get("/admin/rewards/reward/add/")
    post = staff.post(f"/admin/rewards/reward/{reward.pk}/change/", {"amount": "5000"})

    assert change.status_code == 200
    assert change.context["adminform"].form.fields == {}
    assert add.status_code == 403
    assert post.status_code == 403
    assert Reward.objects.get(pk=reward.pk).amount == reward.amount
    assert staff.get(f"/admin/rewards/reward/{reward.pk}/delete/").status_code == 403


def test_token_admin_lists_without_add_or_edit(staff, user):
    ApiToken.issue(user)
    token = ApiToken.objects.get(user=user)

    listing = staff.get("/admin/users/apitoken/")

    assert listing.status_code == 200
    assert user.username in listing.content.decode()
    assert staff.get("/admin/users/apitoken/add/").status_code == 403
    assert staff.post(f"/admin/users/apitoken/{token.pk}/change/", {}).status_code == 403


def test_credential_admin_has_no_add(staff):
    assert staff.get("/admin/credentials/credential/add/").status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/admin/users/user/",
        "/admin/users/apitoken/",
        "/admin/rewards/reward/",
        "/admin/rewards/idempotencyrecord/",
        "/admin/credentials/credential/",
    ],
)
def test_changelists_render(staff, path):
    RewardFactory()
    CredentialFactory()
    IdempotencyRecord.objects.create(
        user=UserFactory(),
        key="k" * 16,
        request_hash="0" * 64,
        status_code=200,
        response_body={"ok": True},
    )

    assert staff.get(path).status_code == 200


def test_non_staff_cannot_use_the_admin(user):
    client = Client()
    client.force_login(user)

    response = client.get("/admin/credentials/credential/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
