"""What the consent form's letter says, as tests read it on the page and in the PDF."""

import html as html_lib
import re

# REK's headings, in REK's order, then the consent statement
HEADINGS = {
    "nb": [
        "Formål med prosjektet",
        "Hvem er ansvarlig for forskningsprosjektet?",
        "Hvorfor får du spørsmål om å delta?",
        "Hva innebærer det for deg å delta?",
        "Det er frivillig å delta",
        "Ditt personvern – hvordan vi oppbevarer og bruker dine opplysninger",
        "Hva skjer med opplysningene dine når vi avslutter forskningsprosjektet?",
        "Dine rettigheter",
        "Hva gir oss rett til å behandle personopplysninger om deg?",
        "Hvor kan jeg finne ut mer?",
        "Samtykkeerklæring",
    ],
    "en": [
        "The purpose of the project",
        "Who is responsible for the research project?",
        "Why are you being asked to take part?",
        "What does taking part involve for you?",
        "Taking part is voluntary",
        "Your privacy – how we store and use your information",
        "What happens to your information when the research project ends?",
        "Your rights",
        "What gives us the right to process personal data about you?",
        "Where can I find out more?",
        "Consent statement",
    ],
}
# the distress-protocol exception, as the participant reads it
EXCEPTION = {
    "nb": "med ett unntak: Hvis vi under intervjuet forstår at det er alvorlig fare for livet",
    "en": "with one exception: if during the interview we understand that there is a serious risk",
}
FACTS = {
    "nb": [
        "Nordvik universitetssykehus HF er ansvarlig for prosjektet",
        "Prosjektleder er Ingrid Solvang.",
        "31. desember 2030",
        "saksnummer REK 123456",
        "telefon +47 51 23 45 67, e-post innofact@example.org",
        "Personvernombudet ved Nordvik universitetssykehus HF",
        "telefon +47 51 76 54 32, e-post personvernombud@example.org",
        "å sende klage til Datatilsynet",
    ],
    "en": [
        "Nordvik University Hospital Trust is responsible for the project",
        "The project leader is Ingrid Solvang.",
        "December 31, 2030",
        "reference REK 123456",
        "phone +47 51 23 45 67, e-mail innofact@example.org",
        "The data protection officer of Nordvik University Hospital Trust",
        "phone +47 51 76 54 32, e-mail personvernombud@example.org",
        "complain to the Norwegian Data Protection Authority (Datatilsynet)",
    ],
}


def words(page: str) -> str:
    """The page as a person reads it: text without tags, whitespace made single."""
    text = re.sub(r"<script.*?</script>", " ", page, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    return re.sub(r"\s+", " ", html_lib.unescape(text))


def in_order(text: str, wanted: list[str]) -> list[str]:
    """Return the texts not found in order (each after the one before)."""
    at, missing = 0, []
    for piece in wanted:
        found = text.find(piece, at)
        if found < 0:
            missing.append(piece)
        else:
            at = found + len(piece)
    return missing
