"""Sign-in with a password (`signet.portal.accounts.signin`) on a real SQLite portal
database, with a clock the test moves: the lock-out after five wrong passwords and its
end, the session's expiry, signing out, a disabled user, one refusal for every cause."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from signet.portal import models
from signet.portal.accounts.signin import LOCK_FOR, SESSION_LIFETIME, SignInRefused, SignIns
from signet.portal.database import open_portal_database
from signet.portal.schema import utc_now
from sqlalchemy.orm import Session, sessionmaker

from tests.portal.conftest import Clock

PASSWORD = "correct horse battery staple"
World = tuple[SignIns, Clock, sessionmaker[Session], str]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    database = open_portal_database(f"sqlite:///{tmp_path / 'portal.db'}")
    sessions = sessionmaker(database.engine, expire_on_commit=False)
    with sessions.begin() as session:
        acme, other = models.Organisation(name="Acme"), models.Organisation(name="Other")
        session.add_all([acme, other])
        session.flush()
        hashed = PasswordHasher().hash(PASSWORD)
        user = models.User(organisation_id=acme.id, email="Li@Acme.example", name="Li",
                           password_hash=hashed)  # fmt: skip
        twin_a = models.User(organisation_id=acme.id, email="twin@x.example", name="A",
                             password_hash=hashed)  # fmt: skip
        twin_b = models.User(organisation_id=other.id, email="twin@x.example", name="B",
                             password_hash=hashed)  # fmt: skip
        session.add_all([user, twin_a, twin_b])
        session.flush()
        user_id = user.id
    clock = Clock()
    yield SignIns(sessions, clock=clock), clock, sessions, user_id
    database.engine.dispose()


def test_the_right_password_signs_in_and_the_cookie_finds_the_person(world: World) -> None:
    signins, _, _, user_id = world
    token, expires = signins.sign_in("  li@acme.EXAMPLE ", PASSWORD)
    assert len(token) >= 43 and expires - utc_now() <= SESSION_LIFETIME
    who = signins.signed_in(token)
    assert who is not None and who.user_id == user_id and not who.sees_all
    assert signins.signed_in(token + "x") is None and signins.signed_in(None) is None
    assert signins.signed_in("A" * 500) is None


def test_five_wrong_passwords_lock_even_the_right_one_until_the_lock_ends(world: World) -> None:
    signins, clock, _, _ = world
    for _ in range(4):
        with pytest.raises(SignInRefused):
            signins.sign_in("li@acme.example", "wrong")
    signins.sign_in("li@acme.example", PASSWORD)  # a success resets the count
    for _ in range(5):
        with pytest.raises(SignInRefused):
            signins.sign_in("li@acme.example", "wrong")
    with pytest.raises(SignInRefused) as refused:
        signins.sign_in("li@acme.example", PASSWORD)
    # the same words for every cause: locked, wrong password, unknown account
    with pytest.raises(SignInRefused) as unknown:
        signins.sign_in("nobody@acme.example", PASSWORD)
    assert refused.value.detail == unknown.value.detail
    clock.advance(LOCK_FOR - timedelta(seconds=5))
    with pytest.raises(SignInRefused):
        signins.sign_in("li@acme.example", PASSWORD)
    clock.advance(timedelta(seconds=10))
    token, _ = signins.sign_in("li@acme.example", PASSWORD)
    assert signins.signed_in(token) is not None


def test_a_session_expires_and_signing_out_ends_it(world: World) -> None:
    signins, clock, sessions, user_id = world
    first, _ = signins.sign_in("li@acme.example", PASSWORD)
    second, _ = signins.sign_in("li@acme.example", PASSWORD)
    signins.sign_out(first)
    assert signins.signed_in(first) is None and signins.signed_in(second) is not None
    clock.advance(SESSION_LIFETIME + timedelta(seconds=1))
    assert signins.signed_in(second) is None
    third, _ = signins.sign_in("li@acme.example", PASSWORD)
    with sessions.begin() as session:
        user = session.get(models.User, user_id)
        assert user is not None
        user.disabled_at = utc_now()
    assert signins.signed_in(third) is None  # disabled since: the session ends with them
    with pytest.raises(SignInRefused):
        signins.sign_in("li@acme.example", PASSWORD)


def test_an_e_mail_of_two_organisations_accounts_is_refused(world: World) -> None:
    signins = world[0]
    with pytest.raises(SignInRefused):
        signins.sign_in("twin@x.example", PASSWORD)
