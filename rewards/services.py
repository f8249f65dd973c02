"""Writes for the rewards app: claiming a passed submission's credits."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from chainlearn.api import error_body
from chainlearn.errors import Conflict, DomainError, Forbidden, NotFound, constraint_name
from courses.models import QuizSubmission
from rewards.models import IdempotencyRecord, Reward
from users.models import User


def reward_claim(*, user: User, submission_id: uuid.UUID) -> Reward:
    """Grant ``settings.REWARD_AMOUNT`` credits for one of the user's passed submissions.

    In one transaction: locks the submission row, creates the ``Reward`` (status
    claimed, no transaction hash) and adds the amount to ``user.credits`` with an
    atomic SQL increment. Raises ``NotFound`` when the submission is unknown or not the
    user's, ``Forbidden`` when it did not pass and ``Conflict`` when it was already
    claimed. Concurrent claims of one submission serialize on the row lock, and the
    reward's unique submission column rejects any second grant regardless.
    """
    amount = settings.REWARD_AMOUNT
    try:
        with transaction.atomic():
            submission = (
                QuizSubmission.objects.select_for_update()
                .filter(pk=submission_id, user_id=user.pk)
                .only("pk", "passed")
                .first()
            )
            if submission is None:
                raise NotFound("Quiz submission not found")
            if not submission.passed:
                raise Forbidden("Quiz not passed: no reward available")
            if Reward.objects.filter(submission_id=submission.pk).exists():
                raise Conflict("Reward already claimed for this submission")
            reward = Reward.objects.create(
                submission_id=submission.pk,
                user_id=user.pk,
                amount=amount,
                status=Reward.Status.CLAIMED,
                tx_hash=None,
            )
            User.objects.filter(pk=user.pk).update(credits=F("credits") + amount)
    except IntegrityError as exc:
        if "submission" not in constraint_name(exc):
            raise
        raise Conflict("Reward already claimed for this submission") from None
    return reward


def reward_claim_result(reward: Reward) -> dict[str, Any]:
    """The claim endpoint's ``data`` for a granted reward."""
    return {
        "submissionId": str(reward.submission_id),
        "amount": reward.amount,
        "txHash": reward.tx_hash,
        "message": f"Successfully claimed {reward.amount} credits",
    }


def request_fingerprint(body: Any) -> str:
    """sha256 of the canonical JSON form of a request body (key order and spacing ignored)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    """What an idempotent request answers: ``body`` is ``data`` on success, else the error body."""

    status_code: int
    body: dict[str, Any]
    replayed: bool


def reward_claim_idempotent(
    *, user: User, submission_id: uuid.UUID, key: str, request_hash: str
) -> StoredResponse:
    """Claim under an ``Idempotency-Key``: the first request's outcome is stored and replayed.

    The record is inserted first in the claim's transaction, so a concurrent request
    with the same (user, key) waits on the unique index until the first commits, then
    replays its stored outcome: whatever the interleaving, one effect. Domain outcomes
    (the 200 and the 403/404/409 of the rules) are stored; a stored key reused with a
    different ``request_hash`` raises ``Conflict``. Keys are scoped to the user.
    """
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    user_id=user.pk, key=key, request_hash=request_hash
                )
        except IntegrityError:
            stored = IdempotencyRecord.objects.filter(user_id=user.pk, key=key).first()
            if stored is None or stored.status_code is None or stored.response_body is None:
                raise Conflict("A request with this Idempotency-Key is in progress") from None
            if stored.request_hash != request_hash:
                raise Conflict(
                    "Idempotency-Key already used with a different request body"
                ) from None
            return StoredResponse(stored.status_code, stored.response_body, replayed=True)

        try:
            reward = reward_claim(user=user, submission_id=submission_id)
            status_code, body = 200, reward_claim_result(reward)
        except DomainError as exc:
            status_code = exc.status_code
            body = error_body(exc.status_code, exc.code, exc.message, exc.details)
        record.status_code = status_code
        record.response_body = body
        record.save(update_fields=["status_code", "response_body"])
    return StoredResponse(status_code, body, replayed=False)
