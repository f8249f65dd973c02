"""Bearer tokens name their user (so the principal's entry is scoped by user and read in
the hot reads' one round trip), tokens issued before that keep working, and a token that
names nobody gets a 401 saying so."""

import secrets

import pytest

from chainlearn.caches import principal_cache
from tests.factories import UserFactory, course_with_modules, token_for
from tests.helpers import CacheCounts, assert_error, assert_success
from users.models import ApiToken, hash_token, token_user_id

pytestmark = pytest.mark.django_db(transaction=True)


def test_issued_tokens_name_their_user():
    user = UserFactory()
    raw = token_for(user)
    assert token_user_id(raw) == user.id
    assert ApiToken.objects.get(key_hash=hash_token(raw)).user_id == user.id


@pytest.mark.parametrize("raw", ["x" * 40, "nodot" * 8, "zz" * 16 + ".secret", ".secret" * 4])
def test_tokens_without_a_user_name_none(raw):
    assert token_user_id(raw) is None


def test_a_token_naming_another_user_authenticates_nobody(api):
    owner, other = UserFactory(), UserFactory()
    raw = token_for(owner)
    forged = f"{other.id.hex}.{raw.partition('.')[2]}"
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert_error(api.get("/api/v1/users/me"), 401, "UNAUTHORIZED")
    assert_error(api.get("/api/v1/users/me/progress"), 401, "UNAUTHORIZED")


def test_a_legacy_token_still_authenticates_uncached(api, django_assert_num_queries):
    user = UserFactory()
    raw = secrets.token_urlsafe(32)  # the format issued before tokens named their user
    ApiToken.objects.create(key_hash=hash_token(raw), user=user)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    counts = CacheCounts(principal_cache.namespace)

    assert assert_success(api.get("/api/v1/users/me"))["id"] == str(user.id)
    with django_assert_num_queries(1):  # the token and its user, every time: never cached
        assert assert_success(api.get("/api/v1/users/me"))["username"] == user.username
    assert counts.now() == {"hits": 0, "misses": 0, "stale": 0, "waits": 0, "fills": 0}

    course = course_with_modules(1)
    listed = assert_success(api.get("/api/v1/courses"))
    assert [c["id"] for c in listed] == [str(course.id)]

    assert api.post("/api/v1/auth/logout").status_code == 200
    assert_error(api.get("/api/v1/users/me"), 401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Authentication credentials were not provided."),
        ("Bearer " + "x" * 40, "Invalid or expired token."),
        ("Basic dXNlcjpwYXNz", "Invalid or expired token."),
    ],
)
def test_401_says_whether_credentials_were_sent(api, header, message):
    if header:
        api.credentials(HTTP_AUTHORIZATION=header)
    for path in ("/api/v1/users/me", "/api/v1/users/me/progress", "/api/v1/credentials"):
        response = api.get(path)
        body = assert_error(response, 401, "UNAUTHORIZED")
        assert body["message"] == message
        assert response["WWW-Authenticate"] == "Bearer"


def test_a_revoked_token_is_invalid_or_expired(api):
    user = UserFactory()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    assert api.get("/api/v1/users/me").status_code == 200
    assert api.post("/api/v1/auth/logout").status_code == 200
    body = assert_error(api.get("/api/v1/users/me"), 401, "UNAUTHORIZED")
    assert body["message"] == "Invalid or expired token."
