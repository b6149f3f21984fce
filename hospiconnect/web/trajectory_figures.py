"""The dashboard's figures in words: the French definition of each headline figure (on hover, expandable, and in
« À propos des indicateurs »), the figures themselves from the report's headline, the populations the coverage
chart can show, and the French formatting of counts and days (plain values in, text out)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from hospiconnect.trajectory import services
from hospiconnect.web.trajectory_charts import fr_day, fr_percent


def thousands(n: int | None) -> str:
    """``12345`` → « 12 345 » (narrow no-break space, the French thousands separator); None → « — »."""
    return "—" if n is None else f"{n:,}".replace(",", "\u202f")


def day_text(value: dt.date | str | None) -> str:
    """A day (or its ISO text, as the report's values give it) as JJ/MM/AAAA."""
    if not value:
        return "—"
    return fr_day(dt.date.fromisoformat(value) if isinstance(value, str) else value)



#: The French definition of each headline figure (shown on hover and in « À propos des indicateurs »).
DEFINITIONS: dict[str, str] = {
    "active": "Identités dont le statut dans l'annuaire est « active » le jour du relevé (jour local de la "
              "politique). Toutes les parts sont calculées sur elles.",
    "compliant": "Identités actives qui détiennent ce jour-là au moins un MIE conforme à la politique d'accès "
                 "(deux facteurs, d'un type accepté et homologué, remis selon ses exigences) : la règle même que "
                 "le fournisseur d'identité applique à chaque connexion.",
    "proofed": "Identités actives ayant un MIE actif remis après une vérification d'identité (face à face au "
               "guichet ou FranceConnect+).",
    "pending": "Identités actives non conformes, sans dérogation, pour lesquelles une remise de MIE est en cours "
               "(dossier d'enrôlement ouvert).",
    "password_only": "Identités actives dont le seul MIE actif est un mot de passe : aucun MIE à deux facteurs "
                     "actif.",
    "exempt": "Identités actives non conformes visées par une dérogation en vigueur de la classe des données de "
              "santé (personnellement ou par leur population).",
    "non_compliant": "Identités actives ni conformes, ni en dérogation, ni en cours d'enrôlement.",
    "rpps_linked": "Identités actives dont le numéro RPPS est renseigné dans l'annuaire.",
    "psc_paired": "Identités actives associées (appairées) à leur identité nationale Pro Santé Connect à la fin du "
                  "jour du relevé : la personne a fait l'association depuis « Mes moyens » et elle n'a pas été "
                  "supprimée depuis.",
    "signins_mfa": "Part des connexions aux applications de la classe des données de santé (codes d'autorisation "
                   "délivrés par le fournisseur d'identité) faites avec deux facteurs, sur les derniers jours.",
    "exceptions_active": "Dérogations à la politique d'accès en vigueur le jour du relevé, toutes classes "
                         "d'applications.",
    "emergency_unreviewed": "Accès d'urgence (bris de glace) délivrés au plus tard le jour du relevé et pas encore "
                            "examinés par le RSSI à la fin de ce jour.",
}


def headline(head: dict[str, Any], signins: dict[str, Any] | None, days: int,
             class_label: str) -> list[dict[str, Any]]:
    """The dashboard's headline figures (``key``, ``label``, ``value``, ``detail``, ``definition``) from the report's
    ``headline`` and the sign-ins of the compliance class (``signins``, over ``days`` days; None: none)."""
    active = head["active"]

    def of_active(n: int) -> str:
        share = services.share(n, active)
        return f"{fr_percent(share)} des identités actives" if share is not None else ""

    figures = [
        {"key": "active", "label": "Identités actives", "value": thousands(active), "detail": ""},
        {"key": "compliant", "label": "Avec un MIE conforme", "value": fr_percent(head["compliant_share"]),
         "detail": f"{thousands(head['compliant'])} identités"},
        {"key": "proofed", "label": "MIE remis après vérification d'identité", "value": thousands(head["proofed"]),
         "detail": of_active(head["proofed"])},
        {"key": "pending", "label": "Enrôlement en cours", "value": thousands(head["pending"]),
         "detail": of_active(head["pending"])},
        {"key": "non_compliant", "label": "Non conformes", "value": thousands(head["non_compliant"]),
         "detail": of_active(head["non_compliant"])},
        {"key": "password_only", "label": "Mot de passe seul", "value": thousands(head["password_only"]),
         "detail": of_active(head["password_only"])},
        {"key": "exempt", "label": "En dérogation", "value": thousands(head["exempt"]),
         "detail": of_active(head["exempt"])},
        {"key": "rpps_linked", "label": "Liées au RPPS", "value": thousands(head["rpps_linked"]),
         "detail": of_active(head["rpps_linked"])},
        {"key": "psc_paired", "label": "Associées à Pro Santé Connect", "value": thousands(head["psc_paired"]),
         "detail": of_active(head["psc_paired"])},
    ]
    total = signins["total"] if signins else 0
    figures.append({"key": "signins_mfa", "label": "Connexions à deux facteurs",
                    "value": fr_percent(signins["mfa_share"] if signins else None),
                    "detail": (f"{thousands(signins['mfa'])} sur {thousands(total)} connexions aux applications "
                               f"« {class_label} », {days} derniers jours" if total
                               else f"aucune connexion aux applications « {class_label} » ces {days} derniers "
                                    f"jours")})
    figures.append({"key": "exceptions_active", "label": "Dérogations en vigueur",
                    "value": thousands(head["exceptions_active"]), "detail": ""})
    figures.append({"key": "emergency_unreviewed", "label": "Accès d'urgence non examinés",
                    "value": thousands(head["emergency_unreviewed"]), "detail": ""})
    for figure in figures:
        figure["definition"] = DEFINITIONS[figure["key"]]
    return figures


def population_choices(contract: Sequence[services.BreakdownRow],
                        poles: Sequence[services.BreakdownRow]) -> list[tuple[str, str]]:
    choices = [("", "Toutes les identités actives"), ("rpps:with", "Avec RPPS"), ("rpps:without", "Sans RPPS")]
    choices += [(f"contract_type:{r.value}", f"Contrat : {r.label}") for r in contract]
    choices += [(f"pole:{r.value}", f"Pôle : {r.label}") for r in poles]
    return choices


