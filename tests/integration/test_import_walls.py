"""Teams are walls for the CSV import too: what an import may merge, and whom it may assign.

The web world has two teams: Montreal (olivia, alice, bob; "Get out the
vote" with ada, marie, grace, gustave) and Quebec (oscar, carol; "Quebec
canvass" with alan), and adam, an administrator of neither.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dialer.services.importer import ImportFileError, ImportReport, import_contacts
from dialer.store.models import CallingListEntry, Contact, User
from tests.e2e.webworld import CONTACTS, WebWorld, build_web_world

Sessions = async_sessionmaker[AsyncSession]
NEUTRAL = (
    "this number is already on file for another team; an administrator can add it to this campaign"
)


@pytest.fixture
async def world(sessions: Sessions) -> WebWorld:
    return await build_web_world(sessions)


def _national(key: str) -> str:
    """The contact's number as a person types it (the test region is CA)."""
    return CONTACTS[key][2].removeprefix("+1")


async def _import(
    world: WebWorld, tmp_path: Path, text: str, *, actor: str, campaign_id: int
) -> ImportReport:
    path = tmp_path / "contacts.csv"
    path.write_text(text)
    return await import_contacts(
        world.sessions,
        path,
        region="CA",
        campaign_id=campaign_id,
        actor_label="web",
        actor_id=world.users[actor],
    )


async def _contact(world: WebWorld, key: str) -> Contact:
    async with world.sessions() as session:
        contact = await session.scalar(
            select(Contact)
            .where(Contact.id == world.contacts[key])
            .options(selectinload(Contact.phones))
        )
    assert contact is not None
    return contact


async def _campaigns_listing(world: WebWorld, key: str) -> set[int]:
    async with world.sessions() as session:
        found = await session.scalars(
            select(CallingListEntry.campaign_id).where(
                CallingListEntry.contact_id == world.contacts[key]
            )
        )
        return set(found)


async def test_an_organizer_cannot_pull_another_teams_contact_into_their_campaign(
    world: WebWorld, tmp_path: Path
) -> None:
    before = await _contact(world, "ada")
    report = await _import(
        world,
        tmp_path,
        "name,phone,mobile,email,notes\n"
        f"Ada Renamed,{_national('ada')},438 555 0111,spy@example.org,Seen by Quebec\n"
        "New Person,438 555 0112,,,\n",
        actor="oscar",
        campaign_id=world.other_campaign_id,
    )
    assert (report.imported, report.updated, report.rejected) == (1, 0, 1)
    assert [(error.line, error.reason) for error in report.errors] == [(2, NEUTRAL)]
    after = await _contact(world, "ada")
    assert (after.first_name, after.last_name, after.email, after.notes) == (
        before.first_name,
        before.last_name,
        before.email,
        before.notes,
    )
    assert after.updated_at == before.updated_at
    assert [phone.e164 for phone in after.phones] == [CONTACTS["ada"][2]]
    assert await _campaigns_listing(world, "ada") == {world.campaign_id}


async def test_a_row_mixing_numbers_of_both_sides_of_the_wall_names_no_contact(
    world: WebWorld, tmp_path: Path
) -> None:
    alan_before = await _contact(world, "alan")
    report = await _import(
        world,
        tmp_path,
        f"name,phone,mobile\nMixed Up,{_national('alan')},{_national('ada')}\n",
        actor="oscar",
        campaign_id=world.other_campaign_id,
    )
    assert [(error.line, error.reason) for error in report.errors] == [(2, NEUTRAL)]
    assert "#" not in report.errors[0].reason
    assert (await _contact(world, "alan")).first_name == alan_before.first_name


async def test_an_organizer_still_merges_the_contacts_of_their_own_team(
    world: WebWorld, tmp_path: Path
) -> None:
    report = await _import(
        world,
        tmp_path,
        f"name,phone,email\nAlan Turing,{_national('alan')},alan@example.org\n",
        actor="oscar",
        campaign_id=world.other_campaign_id,
    )
    assert (report.updated, report.rejected) == (1, 0)
    assert (await _contact(world, "alan")).email == "alan@example.org"


async def test_an_administrator_import_merges_across_teams(world: WebWorld, tmp_path: Path) -> None:
    report = await _import(
        world,
        tmp_path,
        f"name,phone,email\nAda Lovelace,{_national('ada')},ada@example.org\n",
        actor="adam",
        campaign_id=world.other_campaign_id,
    )
    assert (report.updated, report.rejected, report.added_to_list) == (1, 0, 1)
    assert (await _contact(world, "ada")).email == "ada@example.org"
    assert await _campaigns_listing(world, "ada") == {world.campaign_id, world.other_campaign_id}


async def test_assignees_must_be_active_members_of_the_campaigns_team(
    world: WebWorld, tmp_path: Path
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("name,phone\nNew Person,438 555 0113\n")
    async with world.sessions.begin() as session:
        await session.execute(
            update(User).where(User.id == world.users["bob"]).values(is_active=False)
        )
    messages = []
    # carol is on the other team, bob is deactivated, nobody does not exist:
    # all three read the same, so the form tells nothing about other teams.
    for name in ("carol", "bob", "nobody"):
        with pytest.raises(ImportFileError) as refused:
            await import_contacts(
                world.sessions,
                path,
                region="CA",
                campaign_id=world.campaign_id,
                assign_to=[name],
                actor_id=world.users["olivia"],
            )
        messages.append(str(refused.value).replace(name, "NAME"))
    assert messages == ["unknown user(s) for --assign-to: NAME"] * 3
    report = await import_contacts(
        world.sessions,
        path,
        region="CA",
        campaign_id=world.campaign_id,
        assign_to=["alice"],
        actor_id=world.users["olivia"],
    )
    assert report.added_to_list == 1
