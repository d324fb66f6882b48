"""Translations: the French catalog is complete and compiled, and the API, the services, the
admin and the example site speak the request's language."""

import gettext
import html
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import translation
from rest_framework.test import APIClient

from user_credits import services
from user_credits.exceptions import (
    InsufficientCredits,
    InvalidArgument,
    InvalidCount,
    InvalidTransition,
)

from .factories import make_group, make_offer, make_user, table_snapshot

ROOT = Path(__file__).resolve().parent.parent
#: Where ``makemessages`` runs to rebuild each catalog (its ``locale`` folder's parent).
SOURCES = {"user_credits": ROOT / "user_credits", "example shop": ROOT / "example_project/shop"}
#: Each catalog shipped: (source, language), French and any language added since.
CATALOGS = [
    pytest.param(source, folder.name, id=f"{name}-{folder.name}")
    for name, source in SOURCES.items()
    for folder in sorted((source / "locale").iterdir())
    if (folder / "LC_MESSAGES" / "django.po").exists()
]
API = "/api/credits/"
needs_gettext = pytest.mark.skipif(
    not (shutil.which("msgfmt") and shutil.which("xgettext") and shutil.which("msgmerge")),
    reason="needs GNU gettext (apt-get install gettext)",
)


@pytest.fixture(autouse=True)
def _back_to_english():
    """A request in French leaves French active in this thread (LocaleMiddleware activates a
    language and does not restore the previous one): later tests must not inherit it."""
    yield
    translation.deactivate()


def po_entries(path):
    """``[(msgid, [msgstr…], flags)]`` of a .po file, the header left out."""
    entries = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        fields, key, flags = {}, None, set()
        for line in block.splitlines():
            if line.startswith("#,"):
                flags |= {flag.strip() for flag in line[2:].split(",")}
            elif line.startswith("#"):
                continue
            elif match := re.match(
                r"^(msgid|msgid_plural|msgstr(?:\[\d+\])?|msgctxt) (\".*\")$", line
            ):
                key = match[1]
                fields[key] = eval(match[2])  # a C string literal is a Python one here
            elif line.startswith('"'):
                fields[key] += eval(line)
        if fields.get("msgid"):
            strs = [v for k, v in fields.items() if k.startswith("msgstr")]
            entries.append((fields["msgid"], strs, flags))
    return entries


# --- the catalogs ------------------------------------------------------------------------


def test_french_is_shipped():
    assert {(param.values[0], param.values[1]) for param in CATALOGS} >= {
        (source, "fr") for source in SOURCES.values()
    }


@pytest.mark.parametrize("source, language", CATALOGS)
def test_every_message_of_the_catalog_is_translated(source, language):
    entries = po_entries(source / "locale" / language / "LC_MESSAGES" / "django.po")
    assert len(entries) > 50
    untranslated = [msgid for msgid, strs, _ in entries if not all(strs)]
    fuzzy = [msgid for msgid, _, flags in entries if "fuzzy" in flags]
    assert untranslated == [] and fuzzy == []


@needs_gettext
@pytest.mark.parametrize("source, language", CATALOGS)
def test_makemessages_finds_nothing_new_to_translate(source, language, tmp_path):
    """Rebuild the catalog from the code in a copy: every message of the code is in it,
    translated, and none is fuzzy (a changed message merged into an old translation)."""
    copy = tmp_path / "app"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "django", "makemessages", "-l", language, "--no-location"],
        cwd=copy,
        check=True,
        capture_output=True,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PYTHONPATH": str(ROOT),
        },
    )
    rebuilt = po_entries(copy / "locale" / language / "LC_MESSAGES" / "django.po")
    shipped = {
        msgid
        for msgid, _, _ in po_entries(source / "locale" / language / "LC_MESSAGES" / "django.po")
    }
    assert [msgid for msgid, strs, _ in rebuilt if not all(strs)] == []
    assert [msgid for msgid, _, flags in rebuilt if "fuzzy" in flags] == []
    assert {msgid for msgid, _, _ in rebuilt} == shipped  # nothing obsolete left either


@needs_gettext
@pytest.mark.parametrize("source, language", CATALOGS)
def test_the_compiled_catalog_is_the_po_file_compiled(source, language, tmp_path):
    folder = source / "locale" / language / "LC_MESSAGES"
    fresh = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(fresh), str(folder / "django.po")], check=True)

    def catalog(path):
        with open(path, "rb") as handle:
            return gettext.GNUTranslations(handle)._catalog

    assert catalog(folder / "django.mo") == catalog(fresh)


# --- the services and the API ------------------------------------------------------------


def test_service_errors_are_in_the_active_language(user):
    make_group("g")
    with translation.override("fr"), pytest.raises(InsufficientCredits) as short:
        services.consume(user, "g", 3)
    assert str(short.value) == "Pas assez de jetons dans g : 3 demandés, 0 disponibles."
    with translation.override("fr"), pytest.raises(InvalidCount) as bad:
        services.consume(user, "g", 0)
    assert str(bad.value) == "count doit être un entier positif, reçu 0."
    with pytest.raises(InsufficientCredits) as english:
        services.consume(user, "g", 3)
    assert str(english.value) == "Not enough tokens in g: 3 requested, 0 available."


@pytest.fixture
def consumer(db):
    from django.contrib.auth.models import Permission

    robot = make_user("robot")
    robot.user_permissions.add(Permission.objects.get(codename="consume_credits"))
    client = APIClient()
    client.force_authenticate(robot)
    return client


def test_api_402_in_french_with_accept_language(consumer, user):
    services.grant(user, make_group("g"), 2)
    payload = {"user": user.pk, "offer_group": "g", "count": 5}
    before = table_snapshot()
    french = consumer.post(
        API + "consume/",
        payload,
        format="json",
        HTTP_IDEMPOTENCY_KEY="k1",
        HTTP_ACCEPT_LANGUAGE="fr",
    )
    assert french.status_code == 402
    assert french.json()["code"] == "insufficient_credits"  # codes never change
    assert french.json()["detail"] == "Pas assez de jetons dans g : 5 demandés, 2 disponibles."
    assert french.headers["Content-Language"] == "fr"
    english = consumer.post(
        API + "consume/",
        payload,
        format="json",
        HTTP_IDEMPOTENCY_KEY="k2",
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert english.json()["detail"] == "Not enough tokens in g: 5 requested, 2 available."
    assert table_snapshot() == before


def test_api_validation_errors_name_the_field_in_french(consumer, user):
    make_group("g")
    unknown = consumer.post(
        API + "consume/",
        {"user": user.pk, "offer_group": "g", "count": 1, "colour": "red"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k1",
        HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9",
    )
    assert unknown.status_code == 400
    assert unknown.json()["fields"] == {"colour": ["Champ inconnu."]}
    no_key = consumer.post(
        API + "consume/",
        {"user": user.pk, "offer_group": "g", "count": 1},
        format="json",
        HTTP_ACCEPT_LANGUAGE="fr",
    )
    assert no_key.status_code == 400
    assert no_key.json()["detail"] == ("Envoyez un en-tête Idempotency-Key de 1 à 255 caractères.")
    group = consumer.post(
        API + "consume/",
        {"user": user.pk, "offer_group": "nope", "count": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k2",
        HTTP_ACCEPT_LANGUAGE="fr",
    )
    assert group.status_code == 400
    assert group.json()["fields"] == {"offer_group": ["Groupe d'offres 'nope' inconnu."]}


# --- the admin ---------------------------------------------------------------------------


@pytest.fixture
def staff(client, db):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def test_admin_offer_list_in_french(staff):
    make_offer("Pack", group=make_group("g"), price=Decimal("20"), currency="eur")
    page = staff.get(reverse("admin:user_credits_offer_changelist"), HTTP_ACCEPT_LANGUAGE="fr")
    assert page.status_code == 200
    headers = [
        html.unescape(label)
        for label in re.findall(
            r'<th scope="col"[^>]*>.*?<(?:a|span)[^>]*>([^<]+)<', page.text, re.S
        )
    ]
    for label in ("Nom", "Groupe d'offres", "Prix", "Devise", "Cycle", "Jetons", "Actif"):
        assert label in headers, headers
    assert "Créer ou mettre à jour le prix Stripe des offres récurrentes" in page.text
    assert "mensuel" in page.text  # the cycle's choice label
    english = staff.get(reverse("admin:user_credits_offer_changelist"))
    assert "Offer group" in english.text and "Groupe d&#x27;offres" not in english.text


def test_admin_action_message_in_french(staff, user):
    offer = make_offer("Pack", group=make_group("g"))
    order = services.create_order(user, offer)
    services.mark_paid(order)
    response = staff.post(
        reverse("admin:user_credits_order_changelist"),
        {"action": "mark_paid", "_selected_action": [order.pk], "apply": "1", "message": "ok"},
        follow=True,
        HTTP_ACCEPT_LANGUAGE="fr",
    )
    assert "0 payée(s), 1 ignoré(s) : déjà payée." in response.text


# --- messages of the holds, the bulk consumption and the API's strict integers -----------


def test_a_settled_hold_refuses_capture_in_the_active_language(user):
    services.grant(user, make_group("g"), 5)
    held = services.hold(user, "g", 2)
    services.release(held)
    before = table_snapshot()
    with translation.override("fr"), pytest.raises(InvalidTransition) as french:
        services.capture(held)
    assert str(french.value) == (
        f"La réservation n° {held.pk} a le statut released ; elle ne peut pas être prélevée."
    )
    assert french.value.field == "hold"
    with pytest.raises(InvalidTransition) as english:
        services.capture(held)
    assert str(english.value) == f"Hold #{held.pk} is released; it cannot be captured."
    assert table_snapshot() == before


def test_a_bad_batch_item_is_named_in_the_active_language(user):
    services.grant(user, make_group("g"), 5)
    items = [services.ConsumeItem(user, "g", 1), "not an item"]
    before = table_snapshot()
    with translation.override("fr"), pytest.raises(InvalidArgument) as french:
        services.consume_many(items)
    assert str(french.value) == "L'élément 1 n'est pas un ConsumeItem."
    assert french.value.field == "items[1]"
    with translation.override("fr"), pytest.raises(InvalidArgument) as unknown:
        services.consume_many([services.ConsumeItem(user.pk + 1000, "g", 1)])
    assert str(unknown.value) == f"Élément 0 : titulaire {user.pk + 1000!r} inconnu."
    assert table_snapshot() == before


def test_api_strict_integer_error_in_french(consumer, user):
    services.grant(user, make_group("g"), 5)
    before = table_snapshot()
    response = consumer.post(
        API + "consume/",
        {"user": user.pk, "offer_group": "g", "count": "3"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k1",
        HTTP_ACCEPT_LANGUAGE="fr",
    )
    assert response.status_code == 400
    assert response.json()["fields"] == {"count": ["Un nombre entier est requis."]}
    assert table_snapshot() == before
