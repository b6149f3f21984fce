"""Generator of realistic HR exports (the CSV format of ``hospiconnect directory import``).

Used by the benchmark, the demo seed and the tests. The output is deterministic for a given seed and
always valid: unique matricules and RPPS numbers (with their Luhn key), and no accidental homonyms
(no two rows share birth name, first given name and birth date), so that every row imports.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

from hospiconnect.directory.normalize import normalize_name
from hospiconnect.directory.validation import luhn_complete

FAMILY_NAMES = (
    "Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau", "Laurent",
    "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel", "Fournier", "Girard",
    "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent", "Muller", "Lefebvre", "Faure", "André",
    "Mercier", "Blanc", "Guérin", "Boyer", "Garnier", "Chevalier", "François", "Legrand", "Gauthier", "Garcia",
    "Perrin", "Robin", "Clément", "Morin", "Nicolas", "Henry", "Roussel", "Mathieu", "Gautier", "Masson",
    "Marchand", "Duval", "Denis", "Dumont", "Marie", "Lemaire", "Noël", "Meyer", "Dufour", "Meunier",
    "Brun", "Blanchard", "Giraud", "Joly", "Rivière", "Lucas", "Brunet", "Gaillard", "Barbier", "Arnaud",
    "Martinez", "Gérard", "Roche", "Renard", "Schmitt", "Roy", "Leroux", "Colin", "Vidal", "Caron",
    "Picard", "Roger", "Fabre", "Aubert", "Lemoine", "Renaud", "Dumas", "Lacroix", "Olivier", "Philippe",
    "Bourgeois", "Pierre", "Benoît", "Rey", "Leclerc", "Payet", "Rolland", "Leclercq", "Guillaume", "Lecomte",
    "Lopez", "Jean", "Dupuy", "Guillot", "Hubert", "Berger", "Carpentier", "Sanchez", "Dupuis", "Moulin",
    "Louis", "Deschamps", "Huet", "Vasseur", "Perez", "Boucher", "Fleury", "Royer", "Klein", "Jacquet",
    "Adam", "Paris", "Poirier", "Marty", "Aubry", "Guyot", "Carré", "Charles", "Renault", "Charpentier",
    "Ménard", "Maillard", "Baron", "Bertin", "Bailly", "Hervé", "Schneider", "Fernandez", "Le Gall", "Collet",
    "Léger", "Bouvier", "Julien", "Prévost", "Millet", "Perrot", "Daniel", "Le Roux", "Cousin", "Germain",
    "Breton", "Besson", "Langlois", "Rémy", "Le Goff", "Pelletier", "Lévêque", "Perrier", "Leblanc", "Barré",
    "Lebrun", "Marchal", "Weber", "Mallet", "Hamon", "Boulanger", "Jacob", "Monnier", "Michaud", "Rodriguez",
    "Guichard", "Gillet", "Étienne", "Grondin", "Poulain", "Tessier", "Chevallier", "Collin", "Chauvin", "Da Silva",
    "Bouchet", "Gay", "Lemaître", "Bénard", "Maréchal", "Humbert", "Reynaud", "Antoine", "Hoarau", "Perret",
    "Barthélemy", "Cordier", "Pichon", "Lejeune", "Gilbert", "Lamy", "Delaunay", "Pasquier", "Carlier", "Laporte",
    "N'Diaye", "Benali", "Haddad", "Nguyen", "Traoré", "Diallo", "Mansouri", "Ferreira", "Santos", "Kowalski",
)
FEMALE_NAMES = (
    "Marie", "Nathalie", "Isabelle", "Sylvie", "Catherine", "Françoise", "Sandrine", "Valérie", "Christine",
    "Stéphanie", "Céline", "Aurélie", "Émilie", "Julie", "Camille", "Laura", "Sarah", "Léa", "Manon", "Chloé",
    "Inès", "Clara", "Anaïs", "Pauline", "Mathilde", "Claire", "Hélène", "Sophie", "Virginie", "Caroline",
    "Audrey", "Élodie", "Marion", "Lucie", "Justine", "Charlotte", "Océane", "Morgane", "Laetitia", "Delphine",
    "Agnès", "Brigitte", "Martine", "Monique", "Patricia", "Véronique", "Karine", "Corinne", "Fatima", "Yasmine",
    "Anne-Sophie", "Marie-Claire", "Zoé", "Jade", "Louise", "Alice", "Eva", "Romane", "Margaux", "Noémie",
)
MALE_NAMES = (
    "Jean", "Pierre", "Michel", "Philippe", "Alain", "Nicolas", "Christophe", "Patrick", "Laurent", "Frédéric",
    "Stéphane", "David", "Julien", "Sébastien", "Thomas", "Alexandre", "Antoine", "Maxime", "Kévin", "Romain",
    "Lucas", "Hugo", "Théo", "Louis", "Mathieu", "Guillaume", "Olivier", "Éric", "François", "Benoît",
    "Jérôme", "Vincent", "Cédric", "Fabrice", "Arnaud", "Damien", "Yannick", "Mehdi", "Karim", "Mohamed",
    "Jean-Pierre", "Jean-Marc", "Anthony", "Quentin", "Bastien", "Adrien", "Florian", "Clément", "Paul", "Raphaël",
)
COMMUNES = (
    "75056", "69123", "13055", "31555", "33063", "59350", "44109", "67482", "34172", "35238", "06088",
    "76540", "38185", "21231", "49007", "37261", "63113", "54395", "25056", "87085", "2A004", "2B033",
    "97411", "97209", "29019", "72181", "80021", "45234", "14118", "57463",
)
COUNTRIES_ABROAD = ("99350", "99352", "99351", "99134", "99139", "99127", "99131", "99109")
ESTABLISHMENTS = ("690781810", "690000880", "690023411", "010008407")
UNITS = {
    "POLE-MED": ("CARDIO", "PNEUMO", "NEURO", "GERIA", "MED-INT"),
    "POLE-CHIR": ("BLOC", "ORTHO", "CHIR-VISC", "ANESTH"),
    "POLE-URG": ("URG", "SAMU", "REA", "USC"),
    "POLE-FEM": ("MATER", "PEDIA", "NEONAT"),
    "POLE-MT": ("LABO", "IMAGERIE", "PHARMA"),
    "POLE-ADM": ("DRH", "DSI", "FINANCES", "ACCUEIL", "LOGISTIQUE"),
}
# (role, has an RPPS number, weight): regulated professions hold an RPPS number, about 45 % of the rows.
ROLES = (
    ("medecin", True, 12), ("interne", True, 5), ("pharmacien", True, 2), ("sage_femme", True, 2),
    ("ide", True, 20), ("kine", True, 2), ("manipulateur", True, 2),
    ("aide_soignant", False, 22), ("ash", False, 8), ("secretaire", False, 9), ("admin", False, 6),
    ("technicien", False, 5), ("informaticien", False, 2), ("brancardier", False, 3),
)
# Contract labels as HR systems spell them (French labels and codes mixed), with their weight.
CONTRACTS = (
    ("titulaire", 40), ("CDI", 12), ("CDD", 18), ("Remplacement", 4), ("Intérim", 4), ("vacataire", 4),
    ("étudiant", 5), ("stagiaire", 3), ("prestataire", 3), ("fixed_term", 2), ("permanent", 2),
    ("trainee", 1), ("contractor", 1), ("interim", 1),
)
SHORT_CONTRACTS = {"CDD", "Remplacement", "Intérim", "vacataire", "étudiant", "stagiaire", "prestataire",
                   "fixed_term", "trainee", "contractor", "interim"}
HEADER = ("matricule", "nom_naissance", "nom_usage", "prenoms", "date_naissance", "commune_naissance",
          "pays_naissance", "sexe", "email", "rpps", "finess", "unites", "roles", "contrat", "date_debut",
          "date_fin")


def _ascii(name: str) -> str:
    import unicodedata

    text = unicodedata.normalize("NFKD", name)
    return "".join(c for c in text if c.isalnum() and not unicodedata.combining(c)).lower()


def generate_hr_rows(n: int, seed: int = 0, *, today: dt.date | None = None,
                     matricule_prefix: str = "M") -> list[dict[str, str]]:
    """Return ``n`` valid HR rows (dicts keyed by the columns of :data:`HEADER`), deterministic for ``seed``.

    About 45 % have an RPPS number; every contract type appears; a few fixed-term contracts ended in the
    past (those identities are ended by the import).
    """
    rnd = random.Random(seed)
    today = today or dt.date.today()
    role_weights = [w for _, _, w in ROLES]
    contract_weights = [w for _, w in CONTRACTS]
    rpps_seen: set[str] = set()
    keys_seen: set[tuple[str, str, dt.date]] = set()
    emails_seen: set[str] = set()
    poles = list(UNITS)
    rows = []
    for i in range(1, n + 1):
        female = rnd.random() < 0.72
        given = [rnd.choice(FEMALE_NAMES if female else MALE_NAMES) for _ in range(rnd.choice((1, 1, 2, 2, 3)))]
        family = rnd.choice(FAMILY_NAMES)
        while True:  # re-draw the birth date until the person has no homonym in the file
            birth = dt.date(1955, 1, 1) + dt.timedelta(days=rnd.randrange(0, 365 * 49))
            key = (normalize_name(family), normalize_name(given[0]), birth)
            if key not in keys_seen:
                keys_seen.add(key)
                break
        usage = rnd.choice(FAMILY_NAMES) if female and rnd.random() < 0.25 else ""
        abroad = rnd.random() < 0.08
        role, regulated, _ = rnd.choices(ROLES, weights=role_weights)[0]
        rpps = ""
        if regulated:
            while not rpps or rpps in rpps_seen:
                rpps = luhn_complete("10" + "".join(rnd.choice("0123456789") for _ in range(8)))
            rpps_seen.add(rpps)
        contract = rnd.choices(CONTRACTS, weights=contract_weights)[0][0]
        if role == "interne":
            contract = "étudiant"
        start = today - dt.timedelta(days=rnd.randrange(-60, 365 * 30))
        start = max(start, birth.replace(day=1) + dt.timedelta(days=365 * 18))  # hired at 18 or later
        end = ""
        if contract in SHORT_CONTRACTS:
            # Mostly future end dates; about 5 % of short contracts ended already.
            offset = rnd.randrange(-40, -1) if rnd.random() < 0.05 else rnd.randrange(1, 400)
            end_date = max(today + dt.timedelta(days=offset), start)
            end = end_date.isoformat()
        email = f"{_ascii(given[0])}.{_ascii(usage or family)}@chu-exemple.fr"
        if email in emails_seen:
            email = email.replace("@", f"{i}@")
        emails_seen.add(email)
        pole = rnd.choice(poles)
        finess = [rnd.choice(ESTABLISHMENTS)]
        if rnd.random() < 0.1:
            finess.append(rnd.choice(ESTABLISHMENTS))
        rows.append({
            "matricule": f"{matricule_prefix}{i:07d}",
            "nom_naissance": family.upper() if rnd.random() < 0.5 else family,
            "nom_usage": usage,
            "prenoms": " ".join(given),
            "date_naissance": birth.isoformat(),
            "commune_naissance": "" if abroad else rnd.choice(COMMUNES),
            "pays_naissance": rnd.choice(COUNTRIES_ABROAD) if abroad else "99100",
            "sexe": "F" if female else "M",
            "email": email,
            "rpps": rpps,
            "finess": "|".join(dict.fromkeys(finess)),
            "unites": f"{pole}|{rnd.choice(UNITS[pole])}",
            "roles": role,
            "contrat": contract,
            "date_debut": start.isoformat(),
            "date_fin": end,
        })
    return rows


def write_hr_csv(path: str | Path, rows: list[dict[str, str]], *, delimiter: str = ";", bom: bool = True,
                 date_format: str = "iso") -> Path:
    """Write ``rows`` as an HR export at ``path`` (UTF-8, with a BOM as spreadsheets write it); return the path.

    ``date_format="fr"`` writes dates as ``DD/MM/YYYY``.
    """
    path = Path(path)
    columns = list(HEADER) + [c for c in (rows[0] if rows else {}) if c not in HEADER]
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, delimiter=delimiter, lineterminator="\r\n")
        writer.writeheader()
        for row in rows:
            if date_format == "fr":
                row = {k: _fr_date(v) if k.startswith("date_") else v for k, v in row.items()}
            writer.writerow(row)
    return path


def _fr_date(value: str) -> str:
    if not value:
        return value
    return dt.date.fromisoformat(value).strftime("%d/%m/%Y")


def generate_hr_csv(path: str | Path, n: int, seed: int = 0, *, today: dt.date | None = None,
                    delimiter: str = ";", bom: bool = True) -> Path:
    """Write a realistic, valid HR export of ``n`` rows at ``path``; return the path."""
    return write_hr_csv(path, generate_hr_rows(n, seed, today=today), delimiter=delimiter, bom=bom)
