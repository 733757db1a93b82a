"""Fictional words for the study at scale: note texts and reflections without names, numbers
or addresses (tests/devdata/test_scale.py checks), drawn reproducibly.
"""

import random

from interview.store.identifiers import warning_kinds

SENTENCES = {
    "nb": {
        "inhibits": (
            "Lang ventetid på avrusning, ble sendt hjem to ganger.",
            "Opplever at ingen tar ansvar når noe går galt mellom tjenestene.",
            "Må fortelle historien sin på nytt hver gang det kommer en ny behandler.",
            "Fastlegen og teamet snakker ikke sammen, og medisinlista var feil i flere uker.",
            "Følte seg avvist på legevakten fordi det handlet om rus.",
            "Fikk beskjed om å bli rusfri før det kunne bli snakk om psykisk helsehjelp.",
            "Det tok nesten et år å få bolig, og imens ble alt verre.",
            "Ble skrevet ut fra sengeposten uten at noen visste hvor hen skulle bo.",
            "Saksbehandleren på NAV byttes stadig, og søknader blir liggende.",
            "Mange skjemaer og brev som er vanskelige å forstå.",
            "Ingen spurte hva som var viktig i livet utenom behandlingen.",
            "Opplever at personalet snakker over hodet på en i møter.",
            "Kort tid per samtale, alt handler om medisiner.",
            "Ble kasteball mellom kommunen og spesialisthelsetjenesten.",
            "Sluttet å gå på møter fordi det føltes som kontroll, ikke hjelp.",
            "Vanskelig å nå noen på telefon sent på dagen.",
            "Mangler noen å ringe når det blir tungt i helgene.",
            "Ventelista på poliklinikken var lang, og ingen fulgte opp i mellomtiden.",
        ),
        "promotes": (
            "Opplever at teamet og fastlegen snakker sammen, slipper å fortelle alt på nytt.",
            "Den faste kontaktpersonen kjenner historien og tar seg tid.",
            "Teamet kom hjem da det var vanskelig å komme seg ut.",
            "Fikk hjelp med både bolig, økonomi og behandling på samme sted.",
            "Erfaringskonsulenten i teamet forstår hvordan det er.",
            "Ble tatt med på råd om medisinene, og det ble bedre.",
            "Teamet hjalp til med å søke jobb og følge opp avtaler.",
            "Møtene er korte, men hyppige, og det gir trygghet.",
            "Fikk komme raskt inn på avrusning da det trengtes.",
            "Blir sett som et helt menneske, ikke bare en diagnose.",
            "Kan sende melding når som helst og får svar samme dag.",
            "Ansvarsgruppemøtene fungerer, alle vet hva de skal gjøre.",
            "Teamet var med til NAV og forklarte situasjonen.",
            "Fikk støtte til å ta opp igjen en hobby og treffe folk.",
            "Personalet er ærlige og holder det de lover.",
            "Kjenner seg trygg på at teamet ikke gir opp.",
            "Overgangen fra sykehuset gikk fint fordi teamet var med fra starten.",
            "Fikk treningstilbud gjennom teamet, og det hjelper på søvnen.",
        ),
        "neutral": (
            "Har hatt kontakt med teamet i omtrent to år.",
            "Får hjelp fra teamet, fastlegen og boligkontoret.",
            "Treffer teamet en gang i uka, oftere i perioder.",
            "Beskriver kontakten som skiftende, avhengig av hvem som er på jobb.",
            "Synes det er vanskelig å svare på, må tenke litt.",
            "Sier at det har blitt bedre det siste halvåret.",
            "Nevner at det er mange å forholde seg til.",
            "Ønsker mer hjelp til hverdagen, ikke bare behandling.",
            "Tar en pause her, fortsetter etter noen minutter.",
            "Forteller om en periode med innleggelse i fjor.",
            "Har ikke så mye å legge til på dette spørsmålet.",
            "Mener at tjenestene burde samarbeide mer.",
            "Forteller at familien også har vært involvert.",
            "Understreker at det varierer mye fra uke til uke.",
        ),
        "flagged": (
            "Ba om at innkallingen sendes til deltaker@example.invalid i stedet for brev.",
            "Skrev ned nummeret 400 00 000 for å ringe tilbake etter intervjuet.",
        ),
        "comment": (
            "Deltakeren ønsket å avslutte og var tydelig på det.",
            "Ble sliten underveis, vi avtalte å ta resten en annen dag.",
            "Teamet er varslet etter avtale med deltakeren.",
            "Det ble for tungt å snakke om dette i dag.",
        ),
        "reflection": (
            "Godt intervju, deltakeren var åpen.",
            "Krevende samtale, men vi fikk snakket om det viktigste.",
            "Kjente igjen mye fra egen erfaring, trenger å snakke litt om det.",
            "Rolig intervju, gode svar på spørsmålene om samarbeid.",
            "Deltakeren var sliten mot slutten, vi tok flere pauser.",
            "Fint å høre hvor mye teamet betyr for deltakeren.",
        ),
    },
    "en": {
        "inhibits": (
            "Waited a long time for detox and was sent home twice.",
            "Feels that nobody takes responsibility when things go wrong between services.",
            "Has to tell the whole story again every time there is a new therapist.",
            "The GP and the team do not talk, and the medication list was wrong for weeks.",
            "Felt turned away at the emergency clinic because it was about substance use.",
            "Was told to get clean before there could be any talk of mental health care.",
            "It took almost a year to get housing, and meanwhile everything got worse.",
            "Was discharged from the ward without anyone knowing where they would live.",
            "The caseworker at NAV keeps changing, and applications are left lying.",
            "Lots of forms and letters that are hard to understand.",
            "Nobody asked what mattered in life outside treatment.",
            "Feels that staff talk over their head in meetings.",
            "Short appointments where everything is about medication.",
            "Was passed back and forth between the municipality and the hospital.",
            "Stopped going to meetings because it felt like control, not help.",
            "Hard to reach anyone by phone late in the day.",
            "Has nobody to call when things get heavy at weekends.",
            "The waiting list at the outpatient clinic was long, and nobody followed up.",
        ),
        "promotes": (
            "The team and the GP talk to each other, so there is no need to repeat everything.",
            "The regular contact person knows the history and takes time.",
            "The team came to the flat when it was hard to get out.",
            "Got help with housing, money and treatment in one place.",
            "The peer worker in the team understands what it is like.",
            "Was consulted about the medication, and things got better.",
            "The team helped with job applications and kept track of appointments.",
            "Meetings are short but frequent, and that feels safe.",
            "Got into detox quickly when it was needed.",
            "Feels seen as a whole person, not just a diagnosis.",
            "Can send a message at any time and gets an answer the same day.",
            "The care group meetings work, and everyone knows what to do.",
            "The team came along to NAV and explained the situation.",
            "Got support to take up a hobby again and meet people.",
            "Staff are honest and keep their promises.",
            "Trusts that the team will not give up.",
            "Leaving hospital went well because the team was there from the start.",
            "Got an exercise offer through the team, and it helps with sleep.",
        ),
        "neutral": (
            "Has been in contact with the team for about two years.",
            "Gets help from the team, the GP and the housing office.",
            "Meets the team once a week, more often in some periods.",
            "Describes the contact as changing, depending on who is at work.",
            "Finds this hard to answer and needs to think a little.",
            "Says things have improved over the last six months.",
            "Mentions that there are many people to deal with.",
            "Would like more help with everyday life, not only treatment.",
            "Takes a break here and goes on after a few minutes.",
            "Talks about a period in hospital last year.",
            "Has not much to add to this question.",
            "Thinks the services should work together more.",
            "Says the family has also been involved.",
            "Stresses that it varies a lot from week to week.",
        ),
        "flagged": (
            "Asked for the letters to go to participant@example.invalid instead of the post.",
            "Wrote down the number 400 00 000 to call back after the interview.",
        ),
        "comment": (
            "The participant wanted to stop and was clear about it.",
            "Got tired along the way; we agreed to do the rest another day.",
            "The team has been told, as agreed with the participant.",
            "It was too heavy to talk about this today.",
        ),
        "reflection": (
            "Good interview, the participant was open.",
            "A demanding talk, but we covered what mattered most.",
            "Recognised a lot from my own experience, need to talk about it a little.",
            "Calm interview, good answers on the questions about cooperation.",
            "The participant was tired towards the end, we took several breaks.",
            "Good to hear how much the team means to the participant.",
        ),
    },
}

POOL_SIZE = 300  # distinct note texts per language and polarity


class _Texts:
    """Note texts drawn from fixed pools, each with the identifier kinds the guard finds."""

    def __init__(self, seed: int):
        rng = random.Random(f"{seed}:texts")
        self.pools: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
        for lang, words in SENTENCES.items():
            for bucket in ("inhibits", "promotes", "neutral"):
                own, neutral = list(words[bucket]), list(words["neutral"])
                texts: list[str] = []
                attempts = 0
                while len(texts) < POOL_SIZE:
                    attempts += 1
                    parts = [rng.choice(own)]
                    for _ in range(rng.choice((0, 1, 1, 2))):
                        parts.append(rng.choice(own if rng.random() < 0.5 else neutral))
                    text = " ".join(dict.fromkeys(parts))
                    if text in texts and attempts < 20 * POOL_SIZE:
                        continue
                    texts.append(text)
                self.pools[(lang, bucket)] = [(t, _kinds(t)) for t in texts]
            flagged = []
            for sentence in words["flagged"]:
                for lead in words["neutral"][:4]:
                    text = f"{lead} {sentence}"
                    flagged.append((text, _kinds(text)))
            self.pools[(lang, "flagged")] = flagged

    def pick(self, rng: random.Random, lang: str, bucket: str) -> tuple[str, str | None]:
        """Return a text and its identifier kinds (None when the guard finds nothing)."""
        return rng.choice(self.pools[(lang, bucket)])


def _kinds(text: str) -> str | None:
    # exactly what Note.flag_identifiers stores when the text is set
    return " ".join(warning_kinds(text)) or None
