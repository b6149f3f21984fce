"""Reference data of the synthetic establishment: sizes, sites, pôles and services, professions, contracts,
adoption rates, relying parties, sign-in variants."""

from __future__ import annotations

import dataclasses

from hospiconnect.authenticators.amr import Factor, amr_for
from hospiconnect.directory.validation import luhn_complete


@dataclasses.dataclass(frozen=True)
class Sizes:
    identities: int
    days: int
    events: int


FULL = Sizes(identities=100_000, days=365, events=10_000_000)
SMOKE = Sizes(identities=2_000, days=30, events=50_000)


ESTABLISHMENTS = (  # FINESS numbers of department 99 (none exists): fictional
    (luhn_complete("99010001"), "Centre hospitalier universitaire de Valmont (fictif)", 0.60),
    (luhn_complete("99010002"), "Hôpital Saint-Aubin de Valmont (fictif)", 0.25),
    (luhn_complete("99010003"), "Centre de gériatrie de Bellerive (fictif)", 0.15),
)
LEGAL_FINESS = luhn_complete("99010000")
# pôle code, name, kind of staff it employs (care, medtech, admin, tech), then 10 (code, name) services.
POLES: tuple[tuple[str, str, str, tuple[tuple[str, str], ...]], ...] = (
    ("P-MED", "Pôle médecine", "care", (
        ("MED-INT", "Médecine interne"), ("ENDOC", "Endocrinologie"), ("GASTRO", "Hépato-gastro-entérologie"),
        ("NEPHRO", "Néphrologie"), ("DIALYSE", "Hémodialyse"), ("RHUMATO", "Rhumatologie"),
        ("DERMATO", "Dermatologie"), ("INFECTIO", "Maladies infectieuses"), ("HDJ-MED", "Hôpital de jour de médecine"),
        ("CS-MED", "Consultations de médecine"))),
    ("P-CHIR", "Pôle chirurgie", "care", (
        ("CHIR-VISC", "Chirurgie viscérale"), ("CHIR-ORTHO", "Chirurgie orthopédique"), ("UROLOGIE", "Urologie"),
        ("ORL", "Oto-rhino-laryngologie"), ("OPHTALMO", "Ophtalmologie"), ("CHIR-PLAST", "Chirurgie plastique"),
        ("BLOC-A", "Bloc opératoire central"), ("BLOC-B", "Bloc opératoire ambulatoire"),
        ("ANESTH", "Anesthésie"), ("SSPI", "Salle de surveillance post-interventionnelle"))),
    ("P-URG", "Pôle urgences, SAMU et réanimation", "care", (
        ("URG-AD", "Urgences adultes"), ("URG-PED", "Urgences pédiatriques"), ("SAMU", "SAMU – centre 15"),
        ("SMUR", "SMUR"), ("REA-MED", "Réanimation médicale"), ("REA-CHIR", "Réanimation chirurgicale"),
        ("USC", "Unité de surveillance continue"), ("UHCD", "Unité d'hospitalisation de courte durée"),
        ("URG-SA", "Urgences de Saint-Aubin"), ("CUMP", "Cellule d'urgence médico-psychologique"))),
    ("P-FEM", "Pôle femme-mère-enfant", "care", (
        ("MATER", "Maternité"), ("SALLE-NAI", "Salle de naissance"), ("GYNECO", "Gynécologie"),
        ("NEONAT", "Néonatologie"), ("REA-NEO", "Réanimation néonatale"), ("PEDIA", "Pédiatrie"),
        ("CHIR-PED", "Chirurgie pédiatrique"), ("PMA", "Assistance médicale à la procréation"),
        ("CS-FEM", "Consultations femme-enfant"), ("PMI", "Liaison PMI"))),
    ("P-CARDIO", "Pôle cardio-vasculaire et thoracique", "care", (
        ("CARDIO", "Cardiologie"), ("USIC", "Soins intensifs de cardiologie"), ("RYTHMO", "Rythmologie"),
        ("CHIR-CARD", "Chirurgie cardiaque"), ("CHIR-THOR", "Chirurgie thoracique"),
        ("CHIR-VASC", "Chirurgie vasculaire"), ("PNEUMO", "Pneumologie"), ("EFR", "Explorations fonctionnelles"),
        ("READ-CARD", "Réadaptation cardiaque"), ("HEMODYN", "Hémodynamique"))),
    ("P-NEURO", "Pôle neurosciences", "care", (
        ("NEURO", "Neurologie"), ("UNV", "Unité neuro-vasculaire"), ("NEUROCHIR", "Neurochirurgie"),
        ("EEG", "Neurophysiologie"), ("MPR", "Médecine physique et réadaptation"),
        ("SSR-NEURO", "Soins de suite neurologiques"), ("EPILEPSIE", "Épileptologie"),
        ("SOMMEIL", "Centre du sommeil"), ("DOULEUR", "Centre de la douleur"), ("CS-NEURO", "Consultations"))),
    ("P-CANCER", "Pôle cancérologie", "care", (
        ("ONCO", "Oncologie médicale"), ("HEMATO", "Hématologie"), ("RADIOTH", "Radiothérapie"),
        ("HDJ-ONCO", "Hôpital de jour d'oncologie"), ("SOINS-PAL", "Soins palliatifs"),
        ("EMSP", "Équipe mobile de soins palliatifs"), ("ONCO-PED", "Onco-pédiatrie"),
        ("GREFFE", "Greffe de moelle"), ("3C", "Centre de coordination en cancérologie"),
        ("CS-ONCO", "Consultations d'annonce"))),
    ("P-GERIA", "Pôle gériatrie", "care", (
        ("GERIA-AIG", "Gériatrie aiguë"), ("SSR-GER", "Soins de suite gériatriques"), ("USLD", "Soins de longue durée"),
        ("EHPAD-1", "EHPAD Les Tilleuls"), ("EHPAD-2", "EHPAD Les Cèdres"), ("UCC", "Unité cognitivo-comportementale"),
        ("EMG", "Équipe mobile de gériatrie"), ("HDJ-GER", "Hôpital de jour gériatrique"),
        ("CS-MEM", "Consultation mémoire"), ("ACC-JOUR", "Accueil de jour"))),
    ("P-PSY", "Pôle psychiatrie", "care", (
        ("PSY-A", "Psychiatrie adulte secteur A"), ("PSY-B", "Psychiatrie adulte secteur B"),
        ("PEDOPSY", "Pédopsychiatrie"), ("CMP", "Centre médico-psychologique"), ("CATTP", "CATTP"),
        ("ADDICTO", "Addictologie"), ("PSY-URG", "Psychiatrie d'urgence"), ("HDJ-PSY", "Hôpital de jour"),
        ("PSY-LIAIS", "Psychiatrie de liaison"), ("UHSA", "Unité sécurisée"))),
    ("P-MT", "Pôle médico-technique", "medtech", (
        ("LABO-BIO", "Biochimie"), ("LABO-HEM", "Hématologie biologique"), ("LABO-MIC", "Microbiologie"),
        ("ANAPATH", "Anatomie pathologique"), ("IMAGERIE", "Imagerie médicale"), ("IRM", "IRM"),
        ("MED-NUC", "Médecine nucléaire"), ("PHARMA", "Pharmacie à usage intérieur"), ("STERIL", "Stérilisation"),
        ("EFS", "Dépôt de sang"))),
    ("P-SP", "Pôle santé publique et information médicale", "admin", (
        ("DIM", "Département d'information médicale"), ("HYGIENE", "Hygiène hospitalière"),
        ("QUALITE", "Qualité et gestion des risques"), ("RECHERCHE", "Recherche clinique"),
        ("ARCHIVES", "Archives médicales"), ("EPIDEMIO", "Épidémiologie"), ("VIGIL", "Vigilances"),
        ("EDUC-TH", "Éducation thérapeutique"), ("SOC", "Service social"), ("DIET", "Diététique"))),
    ("P-ADM", "Pôle administration, logistique et numérique", "admin", (
        ("DG", "Direction générale"), ("DRH", "Direction des ressources humaines"),
        ("DAF", "Direction des finances"), ("DSN", "Direction du numérique"), ("ADMISSIONS", "Bureau des admissions"),
        ("ACHATS", "Achats et marchés"), ("TECHNIQUE", "Services techniques"), ("LOGISTIQUE", "Logistique"),
        ("BIOMED", "Ingénierie biomédicale"), ("RESTAU", "Restauration"))),
)
UNIT_KINDS = {"care": [s for p in POLES if p[2] == "care" for s, _ in p[3]],
              "medtech": [s for p in POLES if p[2] == "medtech" for s, _ in p[3]],
              "admin": [s for p in POLES if p[2] == "admin" for s, _ in p[3]],
              "tech": ["TECHNIQUE", "LOGISTIQUE", "BIOMED", "DSN", "STERIL", "RESTAU"],
              "it": ["DSN"]}


@dataclasses.dataclass(frozen=True)
class Profile:
    role: str
    share: float
    rpps: bool
    units: str
    contracts: tuple[tuple[str, int], ...]


# Regulated professions (RPPS) are 35 % of the staff.
PROFILES: tuple[Profile, ...] = (
    Profile("medecin", .100, True, "care", (("permanent", 6), ("vacataire", 2), ("fixed_term", 1), ("replacement", 1))),
    Profile("interne", .030, True, "care", (("fixed_term", 1),)),
    Profile("ide", .183, True, "care", (("permanent", 6), ("fixed_term", 2), ("replacement", 1), ("interim", 1))),
    Profile("pharmacien", .012, True, "medtech", (("permanent", 3), ("fixed_term", 1))),
    Profile("sage_femme", .015, True, "care", (("permanent", 4), ("fixed_term", 1), ("replacement", 1))),
    Profile("kine", .008, True, "care", (("permanent", 2), ("vacataire", 1))),
    Profile("odontologiste", .002, True, "care", (("permanent", 1), ("vacataire", 1))),
    Profile("aide_soignant", .170, False, "care",
            (("permanent", 6), ("fixed_term", 2), ("replacement", 1), ("interim", 1))),
    Profile("ash", .050, False, "care", (("permanent", 3), ("fixed_term", 2), ("interim", 1))),
    Profile("brancardier", .030, False, "care", (("permanent", 3), ("fixed_term", 1))),
    Profile("psychologue", .020, False, "care", (("permanent", 2), ("vacataire", 1))),
    Profile("secretaire", .050, False, "care", (("permanent", 4), ("fixed_term", 1))),
    Profile("administratif", .100, False, "admin", (("permanent", 5), ("fixed_term", 2), ("vacataire", 1))),
    Profile("technicien", .050, False, "tech", (("permanent", 4), ("fixed_term", 1))),
    Profile("manipulateur", .010, False, "medtech", (("permanent", 3), ("fixed_term", 1))),
    Profile("informaticien", .010, False, "it", (("permanent", 3), ("contractor", 1))),
    Profile("etudiant", .060, False, "care", (("trainee", 1),)),
    Profile("interimaire", .040, False, "care", (("interim", 1),)),
    Profile("prestataire", .030, False, "tech", (("contractor", 1),)),
    Profile("vacataire", .030, False, "care", (("vacataire", 1),)),
)
# Contract lengths in days (min, max) of the contracts that end (permanent staff and vacataires have no end date
# unless they leave: LEAVERS).
CONTRACT_DAYS = {"fixed_term": (90, 540), "replacement": (20, 180), "interim": (7, 120), "trainee": (30, 180),
                 "contractor": (60, 720)}
# Share of each contract type that enrolls a second factor during the period.
ADOPTION = {"permanent": .92, "fixed_term": .85, "replacement": .75, "vacataire": .62, "trainee": .70,
            "interim": .50, "contractor": .55}
# Share of each contract type's identities that arrive during the period: about as many as leave, so that the
# staff stays steady (interim staff and students come and go; permanent staff: about 5 % leave and arrive).
ARRIVALS = {"permanent": .05, "fixed_term": .34, "replacement": .80, "vacataire": .06, "trainee": .70,
            "interim": .85, "contractor": .24}
LEAVERS = {"permanent": .05, "vacataire": .06}  # of those present at the start, without a contract end date
ADMIN_ROLES = ("informaticien", "administratif")
# (client_id, name, class, share of the sign-ins, scope)
CLIENTS = (
    ("dpi-valmont", "Dossier patient informatisé", "health-data", 30, "openid profile"),
    ("dossier-soins", "Dossier de soins infirmiers", "health-data", 10, "openid profile"),
    ("pacs-imagerie", "PACS – imagerie", "health-data", 6, "openid profile"),
    ("sil-laboratoire", "Système d'information du laboratoire", "health-data", 5, "openid profile"),
    ("pharma-circuit", "Circuit du médicament", "health-data", 4, "openid profile"),
    ("messagerie", "Messagerie", "standard", 18, "openid profile email"),
    ("intranet", "Intranet", "standard", 10, "openid profile"),
    ("gestion-temps", "Gestion du temps de travail", "standard", 7, "openid profile"),
    ("formation", "Plateforme de formation", "standard", 3, "openid profile email"),
    ("restauration", "Commande de repas", "standard", 2, "openid"),
    ("console-annuaire", "Console d'administration de l'annuaire", "administration", 3, "openid profile"),
    ("supervision", "Supervision du SI", "administration", 2, "openid profile"),
)
WEBAUTHN_LABELS = {"platform": ("Windows Hello", "Empreinte du téléphone", "Touch ID"),
                   "cross-platform": ("Clé de sécurité", "YubiKey 5 NFC", "Clé FIDO2 du service")}
AAGUIDS = {"platform": ("08987058-cadc-4b81-b6e1-30de50dcbe96", "adce0002-35bc-c60a-648b-0b25f1f05503"),
           "cross-platform": ("cb69481e-8ff7-4039-93ec-0a2729a154a8", "ee882879-721c-4913-9775-3dfcce97072a")}
PASSWORD = "Banc-Trajectoire-Synthetique-2026"
HR_ACTOR = "system:hr_import"
JOBS_ACTOR = "system:jobs"
GRACE_DAYS = 30
CASE_DAYS = 30

# Sign-in variants: (amr, mie kind) → acr follows hospiconnect.idp.checks.acr_for.
PWD_AMR = amr_for(["password"])
VARIANT_AMR = {"totp": amr_for(["password", "totp"]),
               "webauthn_uv": amr_for([Factor("webauthn", user_verified=True)]),
               "webauthn_up": amr_for(["password", Factor("webauthn")])}

