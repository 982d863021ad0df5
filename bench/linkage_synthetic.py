"""Synthetic labelled person records for identity-matching evaluation (``carethread linkage evaluate``).

No real data: surnames are invented (syllable pairs), forenames come from a list of common names, NHS
numbers from the 999 test range (Modulus 11 valid, never issued), postcodes from the unused ``X`` area.

The population is built household by household over a two-year window ending ``REF``:

* families with a baby born in the window (mother, often a partner, older siblings): the mother's
  maternity booking record, a pre-birth (unborn) record for about half the babies, the maternity birth
  record under a placeholder name ("BABY OF SMITH", "TWIN 1", "B/O" ...), health visiting and GP
  records under the registered name (often the father's surname); twins (about 1.6% of births) share
  date of birth, surname, postcode and GP;
* families with children 0-17: GP records, health visiting for the under-5s; about 40% of 16-17 year
  olds have an adult-services record with a new local id, often a nickname, a new address or no NHS
  number;
* adults: GP records, some with a second registration after a move (new postcode, practice, name).

Errors: missing NHS numbers (by source; babies' maternity rows often), NHS numbers failing Modulus 11, the
mother's NHS number on the baby's row (with and without the mother's number in its own column), the
co-twin's NHS number, forename and surname typos, nicknames, date of birth day/month swaps and one-part
typos, moved postcodes and postcode typos, unknown or wrong sex, missing GP practice.

Records are written in event-time order (booking, pre-birth, birth, health visiting, GP...), streamed
through time buckets on disk so memory stays small.  Deterministic per seed.
"""

from __future__ import annotations

import csv
import random
import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

__all__ = ["write_dataset", "REF", "COLUMNS", "nhs_numbers"]

REF = date(2026, 6, 30)
START = REF - timedelta(days=730)
COLUMNS = (
    "record_id", "source", "local_id", "nhs_number", "nhs_number_status", "given_name", "family_name",
    "sex", "birth_date", "due_date", "postcode", "gp_practice", "mother_local_id", "mother_nhs_number",
    "true_person_id",
)

GIVEN_F = """OLIVIA AMELIA ISLA AVA MIA IVY LILY ISABELLA ROSIE SOPHIA GRACE FREYA WILLOW FLORENCE EMILY ELLA
POPPY EVIE ELSIE CHARLOTTE EVELYN SIENNA SOFIA DAISY PHOEBE SOPHIE ALICE HARPER MATILDA RUBY EMILIA MAYA LUNA
ISABELLE ERIN ARIA ESME HANNAH JESSICA EMMA LUCY SARAH REBECCA LAURA AMY KATIE CHLOE MEGAN LAUREN BETHANY
ABIGAIL ELEANOR ELIZABETH VICTORIA SAMANTHA NATALIE STEPHANIE JENNIFER NICOLA MICHELLE DANIELLE KIMBERLEY
CAROLINE CATHERINE KATHERINE MARGARET SUSAN DEBORAH PATRICIA DOROTHY FRANCES HARRIET GEORGINA ALEXANDRA
PENELOPE LOUISE CHRISTINA GABRIELLA AMBER JASMINE LEAH HOLLY PAIGE JADE ZARA NIAMH AISHA FATIMA MARYAM
ZAINAB AMINA ANNA CLARA SKYE ROSE BELLA MOLLY MILLIE EVA LACEY NANCY MABEL HALLIE DARCY IMOGEN ORLA""".split()
GIVEN_M = """OLIVER GEORGE NOAH ARTHUR MUHAMMAD LEO OSCAR HARRY ARCHIE JACK HENRY CHARLIE FREDDIE THEODORE THOMAS
FINLEY ALFIE ISAAC TOMMY ARLO JAMES LUCA ALBIE JOSHUA JACOB WILLIAM EDWARD MAX LUCAS ETHAN MASON DANIEL
SAMUEL JOSEPH DAVID MICHAEL CHRISTOPHER MATTHEW ANDREW RICHARD ROBERT JONATHAN NICHOLAS ANTHONY STEPHEN
TIMOTHY PETER PHILIP PATRICK BENJAMIN ALEXANDER NATHAN DOMINIC SEBASTIAN ZACHARY CAMERON BRADLEY LEONARD
LAWRENCE FREDERICK ALFRED CHARLES FRANCIS GABRIEL HUGO RORY REUBEN ELLIOT ADAM RYAN CONNOR KYLE JORDAN
AARON CALLUM KIERAN DYLAN LEWIS LOGAN RILEY JUDE RONNIE HARVEY STANLEY ELIJAH TOBY FELIX ROMAN IBRAHIM
YUSUF OMAR ALI AYAAN ZAYN KAI LOUIE FINN ELLIS""".split()
_PRE = """ASH BRAD CAR DAL ELM FAR GAR HAL KEN LAN MAR NOR PEN RAD SAL THORN WAL WEST BRAM CROM DUN FEN GOLD
HAZ KIRK LOCK MOOR OAK PRES RAV STAN TAL WHIT YAR BECK COLD DRAY EAST FOX GREEN HOLL KNOT LEE MILL NEW
PARK RED SHAW TURN WOOL BAR CLAY DEN HART""".split()
_SUF = """WORTH FORD TON LEY WOOD SON FIELD BY HAM WELL SHAW COTT DALE BROOK MORE HURST STEAD WICK LOW BRIDGE
GATE COMBE THORPE MAN ER ING LOCK RIDGE STOCK HOLM""".split()
_UNIT = "ABDEFGHJLNPQRSTUWXYZ"
MISSING_NHS = {"gp": 0.05, "health-visiting": 0.15, "maternity-mother": 0.10, "maternity-baby": 0.45,
               "adult": 0.25}


def nhs_numbers(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct Modulus 11 valid numbers in the 999 test range, shuffled."""
    out: list[str] = []
    bodies = list(range(1_000_000))
    rng.shuffle(bodies)
    for b in bodies:
        body = f"999{b:06d}"
        total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1)))
        check = 11 - total % 11
        check = 0 if check == 11 else check
        if check != 10:
            out.append(body + str(check))
            if len(out) == count:
                return out
    raise ValueError("not enough test-range NHS numbers")


def _nicknames() -> dict[str, list[str]]:
    path = Path(__file__).resolve().parent.parent / "adapter" / "reconcile" / "nicknames.csv"
    table: dict[str, list[str]] = {}
    with path.open() as fh:
        rows = csv.reader(line for line in fh if not line.startswith("#"))
        next(rows)
        for row in rows:
            if row:
                table[row[0]] = row[1].split()
    return table


def _zipf(n: int, offset: float, power: float) -> list[float]:
    return [1.0 / (r + offset) ** power for r in range(1, n + 1)]


@dataclass
class Person:
    pid: int
    sex: str
    given: str
    family: str
    dob: date
    nhs: str
    postcode: str
    gp: str
    mother: Person | None = None
    mrn: str = ""                   # maternity local id (mothers)
    hv_id: str = ""                 # health visiting local id
    twin_of: Person | None = None
    birth_order: int | None = None
    due: date | None = None
    records: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class _Gen:
    def __init__(self, seed: int, n_records: int, bucket_dir: Path, buckets: int = 64) -> None:
        self.rng = random.Random(seed)
        self.n_records = n_records
        self.nicks = _nicknames()
        fam = sorted({p + s for p in _PRE for s in _SUF})
        self.rng.shuffle(fam)
        self.families = fam
        self.fam_w = _zipf(len(fam), 20, 1.0)
        self.gf_w = _zipf(len(GIVEN_F), 5, 0.9)
        self.gm_w = _zipf(len(GIVEN_M), 5, 0.9)
        self.nhs = nhs_numbers(self.rng, max(50_000, n_records))
        self.next_nhs = 0
        self.next_pid = 0
        self.counter = {"maternity": 0, "health-visiting": 0, "gp": 0}
        self.written = 0
        self.stats: dict[str, int] = {}
        self.t0 = (START - timedelta(days=420)).toordinal()
        self.t1 = (REF + timedelta(days=200)).toordinal()
        self.nb = buckets
        self.bucket_paths = [bucket_dir / f"b{i:03d}.csv" for i in range(buckets)]
        self.bucket_files = [p.open("w", newline="") for p in self.bucket_paths]
        self.writers = [csv.writer(f) for f in self.bucket_files]
        self.seq = 0

    # --- helpers ---------------------------------------------------------------------------------
    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def family_name(self) -> str:
        return self.rng.choices(self.families, self.fam_w)[0]

    def given_name(self, sex: str) -> str:
        if sex == "F":
            return self.rng.choices(GIVEN_F, self.gf_w)[0]
        return self.rng.choices(GIVEN_M, self.gm_w)[0]

    def address(self) -> tuple[str, str]:
        r = self.rng
        area = "X" + "ABCDEFGHJK"[r.randrange(10)]
        district = r.randrange(1, 30)
        sector = r.randrange(10)
        return self._postcode(area, district, sector), self._gp(area, district)

    def _postcode(self, area: str, district: int, sector: int) -> str:
        r = self.rng
        return f"{area}{district} {sector}{r.choice(_UNIT)}{r.choice(_UNIT)}"

    def _gp(self, area: str, district: int) -> str:
        return f"Y{ord(area[1]) - 64:02d}{district:02d}{self.rng.randrange(3)}"

    def moved(self, postcode: str) -> tuple[str, str]:
        """A new address: same sector, same district or anywhere."""
        r = self.rng
        outward, inward = postcode.split()
        area, district = outward[:2], int(outward[2:])
        x = r.random()
        if x < 0.25:
            return self._postcode(area, district, int(inward[0])), self._gp(area, district)
        if x < 0.6:
            return self._postcode(area, district, r.randrange(10)), self._gp(area, district)
        return self.address()

    def person(self, sex: str, dob: date, family: str, postcode: str, gp: str) -> Person:
        self.next_pid += 1
        nhs = self.nhs[self.next_nhs]
        self.next_nhs += 1
        return Person(self.next_pid, sex, self.given_name(sex), family, dob, nhs, postcode, gp)

    def local(self, source: str, prefix: str) -> str:
        self.counter[source] += 1
        return f"{prefix}{self.counter[source]:07d}"

    def typo(self, s: str) -> str:
        r = self.rng
        if len(s) < 3:
            return s
        i = r.randrange(1, len(s))
        op = r.random()
        letters = "ABCDEFGHIJKLMNOPRSTUVWY"
        if op < 0.35:
            return s[:i] + r.choice(letters) + s[i + 1:]
        if op < 0.6:
            return s[:i] + s[i + 1:]
        if op < 0.8:
            return s[:i] + r.choice(letters) + s[i:]
        if i < len(s) - 1:
            return s[:i] + s[i + 1] + s[i] + s[i + 2:]
        return s[:i] + r.choice(letters)

    def nhs_typo(self, nhs: str) -> str:
        i = self.rng.randrange(10)
        d = str((int(nhs[i]) + self.rng.randrange(1, 10)) % 10)
        return nhs[:i] + d + nhs[i + 1:]

    def dob_noise(self, dob: date) -> str:
        r = self.rng
        x = r.random()
        if x < 0.005:
            self.count("dob_missing")
            return ""
        if x < 0.015 and dob.day <= 12 and dob.day != dob.month:
            self.count("dob_swapped")
            return date(dob.year, dob.day, dob.month).isoformat()
        if x < 0.023:
            self.count("dob_typo")
            part = r.randrange(3)
            try:
                if part == 0:
                    return date(dob.year + r.choice((-1, 1)), dob.month, dob.day).isoformat()
                if part == 1:
                    return date(dob.year, r.choice([m for m in range(1, 13) if m != dob.month]), dob.day).isoformat()
                return date(dob.year, dob.month, r.choice([d for d in range(1, 29) if d != dob.day])).isoformat()
            except ValueError:
                return dob.isoformat()
        return dob.isoformat()

    # --- emit one record -------------------------------------------------------------------------
    def emit(self, t: float, p: Person, source: str, local_id: str, *, kind: str, given: str | None = None,
             family: str | None = None, nhs: str | None = None, status: str | None = None,
             dob: str | None = None, due: date | None = None, sex: str | None = None,
             postcode: str | None = None, gp: str | None = None, mother_local: str = "",
             mother_nhs: str = "", nickname_rate: float = 0.04, noisy: bool = True) -> None:
        r = self.rng
        g = p.given if given is None else given
        f = p.family if family is None else family
        if noisy and given is None:
            x = r.random()
            if x < nickname_rate and self.nicks.get(g):
                g = r.choice(self.nicks[g])
                self.count("nickname")
            elif x < nickname_rate + 0.025:
                g = self.typo(g)
                self.count("given_typo")
            elif x < nickname_rate + 0.032:
                g = ""
        if noisy and family is None:
            x = r.random()
            if x < 0.015:
                f = self.typo(f)
                self.count("family_typo")
            elif x < 0.018:
                f = ""
        if dob is None:
            dob = self.dob_noise(p.dob) if noisy else p.dob.isoformat()
        if sex is None:
            x = r.random()
            sex = {"F": "female", "M": "male"}[p.sex]
            if noisy and x < 0.02:
                sex = "unknown"
            elif noisy and x < 0.023:
                sex = "male" if sex == "female" else "female"
        pc = p.postcode if postcode is None else postcode
        if noisy and pc:
            x = r.random()
            if x < 0.03:
                pc = ""
            elif x < 0.035:
                pc = pc[:-2] + r.choice(_UNIT) + pc[-1]
                self.count("postcode_typo")
            elif x < 0.15:
                pc = pc.lower().replace(" ", "")
        gp_code = p.gp if gp is None else gp
        if nhs is None:
            nhs = ""
        elif nhs and noisy and r.random() < 0.01:
            nhs = self.nhs_typo(nhs)
            self.count("nhs_failing_check")
        row = [source, local_id, nhs, status or "", g.title() if r.random() < 0.5 else g, f, sex, dob,
               due.isoformat() if due else "", pc, gp_code or "", mother_local, mother_nhs, f"P{p.pid:07d}"]
        b = int((t - self.t0) / (self.t1 - self.t0) * self.nb)
        b = min(self.nb - 1, max(0, b))
        self.seq += 1
        self.writers[b].writerow([f"{t:.6f}", self.seq, *row])
        self.written += 1
        p.records += 1
        self.count(f"source:{source}")
        self.count(f"kind:{kind}")

    def t_in_window(self) -> float:
        return self.rng.uniform(START.toordinal(), REF.toordinal())

    def nhs_for(self, p: Person, key: str) -> str:
        return "" if self.rng.random() < MISSING_NHS[key] else p.nhs

    def status(self, source: str, nhs: str) -> str:
        r = self.rng.random()
        if not nhs:
            return self.rng.choice(("", "", "03", "04", "07"))
        if source == "gp":
            return "01" if r < 0.92 else "02"
        if source == "health-visiting":
            return "01" if r < 0.7 else ("02" if r < 0.95 else "03")
        return "01" if r < 0.8 else "02"

    # --- record sets -------------------------------------------------------------------------------
    def gp_records(self, p: Person, t: float | None = None) -> None:
        r = self.rng
        if r.random() < 0.95:
            t = self.t_in_window() if t is None else t
            lid = self.local("gp", p.gp + "-")
            nhs = self.nhs_for(p, "gp")
            self.emit(t, p, "gp", lid, kind="gp", nhs=nhs, status=self.status("gp", nhs))
            if r.random() < 0.04:       # the same record re-sent after an update
                pc, gp = self.moved(p.postcode) if r.random() < 0.5 else (p.postcode, p.gp)
                self.emit(t + r.uniform(1, 200), p, "gp", lid, kind="gp-update", nhs=nhs,
                          status=self.status("gp", nhs), postcode=pc, gp=gp)
        if r.random() < 0.06:           # moved and re-registered: new practice, new local id
            pc, gp = self.moved(p.postcode)
            fam = None
            if p.sex == "F" and 20 <= (REF - p.dob).days / 365.25 <= 45 and r.random() < 0.15:
                fam = self.family_name()
                self.count("family_changed")
            nhs = self.nhs_for(p, "gp")
            t_moved = max(self.t_in_window(), p.dob.toordinal() + 30.0)
            self.emit(t_moved, p, "gp", self.local("gp", gp + "-"), kind="gp-moved", nhs=nhs,
                      status=self.status("gp", nhs), postcode=pc, gp=gp, family=fam)

    def hv_record(self, p: Person, t: float, mother: Person | None) -> None:
        r = self.rng
        if not p.hv_id:
            p.hv_id = self.local("health-visiting", "HV")
        nhs = self.nhs_for(p, "health-visiting")
        mother_nhs = mother_local = ""
        if mother is not None:
            mother_nhs = mother.nhs if r.random() < 0.7 else ""
            mother_local = mother.hv_id if mother.hv_id else ""
        if p.twin_of is not None and nhs and r.random() < 0.03:
            nhs = p.twin_of.nhs
            self.count("co_twin_nhs")
        elif mother is not None and nhs and r.random() < 0.005:
            nhs, mother_nhs = mother.nhs, ""           # the mother's number, and nothing to catch it by
            self.count("mother_nhs_on_baby_uncaught")
        gp = p.gp if r.random() < 0.6 else ""
        # a wrong person's number does not survive a PDS trace: it is present but not traced ("02")
        status = "02" if nhs and nhs != p.nhs else self.status("health-visiting", nhs)
        self.emit(t, p, "health-visiting", p.hv_id, kind="hv", nhs=nhs, status=status,
                  gp=gp, mother_local=mother_local, mother_nhs=mother_nhs)

    def newborn_family(self) -> None:
        r = self.rng
        pc, gp = self.address()
        dob = date.fromordinal(r.randrange(START.toordinal() + 20, REF.toordinal() - 5))
        age = r.choices([r.randint(16, 17), r.randint(18, 24), r.randint(25, 34), r.randint(35, 44)],
                        [0.05, 0.25, 0.5, 0.2])[0]
        mfam = self.family_name()
        mother = self.person("F", dob - timedelta(days=int(age * 365.25) + r.randrange(365)), mfam, pc, gp)
        mother.mrn = self.local("maternity", "RX1M")
        partner = None
        if r.random() < 0.6:
            pfam = mfam if r.random() < 0.45 else self.family_name()
            partner = self.person("M", mother.dob - timedelta(days=r.randrange(-900, 3000)), pfam, pc, gp)
        # the baby (or twins)
        twins = r.random() < 0.016
        bfam = mfam
        x = r.random()
        if partner is not None and partner.family != mfam:
            bfam = partner.family if x < 0.5 else (f"{mfam}-{partner.family}" if x < 0.58 else mfam)
        babies = []
        for k in range(2 if twins else 1):
            b = self.person(r.choice("FM"), dob, bfam, pc, gp)
            b.mother = mother
            babies.append(b)
        if twins:
            babies[0].twin_of, babies[1].twin_of = babies[1], babies[0]
            babies[0].birth_order, babies[1].birth_order = 1, 2
            self.count("twin_pairs")
        due = dob + timedelta(days=int(max(-14, min(40, r.gauss(3, 9)))))   # born up to 40 days early, 14 late
        if r.random() < 0.01:
            due = dob + timedelta(days=r.randrange(50, 100))    # very preterm: outside the relational window
        # older siblings
        older = []
        for _ in range(r.choices((0, 1, 2, 3), (0.45, 0.35, 0.15, 0.05))[0]):
            sdob = dob - timedelta(days=r.randrange(420, 365 * 12))
            if (sdob - mother.dob).days < 16 * 365:
                continue
            sfam = mfam if r.random() < 0.75 else (partner.family if partner else self.family_name())
            s = self.person(r.choice("FM"), sdob, sfam, pc, gp)
            s.mother = mother
            older.append(s)
        # mother: booking (maternity), GP, sometimes health visiting
        if r.random() < 0.5:
            mother.hv_id = self.local("health-visiting", "HV")
        booking_t = due.toordinal() - r.uniform(150, 240)
        if r.random() < 0.95:
            nhs = self.nhs_for(mother, "maternity-mother")
            self.emit(booking_t, mother, "maternity", mother.mrn, kind="maternity-mother", nhs=nhs,
                      status=self.status("maternity", nhs), nickname_rate=0.06 if age < 18 else 0.04)
        self.gp_records(mother)
        if mother.hv_id:
            nhs = self.nhs_for(mother, "health-visiting")
            self.emit(dob.toordinal() + r.uniform(10, 40), mother, "health-visiting", mother.hv_id, kind="hv-mother",
                      nhs=nhs, status=self.status("health-visiting", nhs))
        if partner is not None:
            self.gp_records(partner)
        for s in older:
            self.child_records(s, mother)
        # babies
        pre_birth = r.random() < 0.5            # a pre-birth record for each fetus, or none
        for b in babies:
            if pre_birth:
                self.unborn(b, mother, due, booking_t)
            if r.random() < 0.95:
                self.birth(b, mother, mfam)
            if r.random() < 0.85:
                self.hv_record(b, dob.toordinal() + r.uniform(10, 60), mother)
            self.gp_records(b, dob.toordinal() + r.uniform(14, 100))

    def unborn(self, b: Person, mother: Person, due: date, booking_t: float) -> None:
        r = self.rng
        twin = b.twin_of is not None
        if twin and r.random() < 0.7:
            given = r.choice((f"UNBORN TWIN {b.birth_order}", f"TWIN {b.birth_order}"))
        else:
            given = r.choice(("UNBORN", "", f"BABY OF {mother.family}", "UNBORN BABY"))
        self.emit(booking_t + r.uniform(5, 60), b, "maternity", self.local("maternity", "RX1U"), kind="unborn",
                  given=given, family=mother.family, nhs="", status="", dob="", due=due, sex="unknown",
                  mother_local=mother.mrn, mother_nhs=mother.nhs if r.random() < 0.9 else "")

    def birth(self, b: Person, mother: Person, mfam: str) -> None:
        r = self.rng
        order = b.birth_order
        x = r.random()
        family = mfam
        if order is not None and x < 0.8:
            given = r.choice((f"TWIN {order}", f"TWIN {['', 'ONE', 'TWO'][order]}", f"BABY {order} OF",
                              f"TWIN {['', 'I', 'II'][order]}"))
        elif x < 0.4:
            given = f"BABY OF {mfam}"
        elif x < 0.6:
            given, family = "", f"BABY OF {mfam}"
        elif x < 0.8:
            given = "BABY"
        elif x < 0.9:
            given = "B/O"
        else:
            given = None                  # named at birth
            family = b.family
        nhs = self.nhs_for(b, "maternity-baby")
        mother_nhs = mother.nhs if r.random() < 0.9 else ""
        if r.random() < 0.02 and mother_nhs:
            nhs = mother.nhs             # the mother's number pre-filled on the baby's row
            self.count("mother_nhs_on_baby")
        self.emit(b.dob.toordinal() + r.uniform(0, 2), b, "maternity", self.local("maternity", "RX1M"),
                  kind="maternity-birth", given=given, family=family, nhs=nhs, status="08" if nhs else "",
                  mother_local=mother.mrn, mother_nhs=mother_nhs)
        self.count("placeholder_birth_rows", given is not None)

    def child_records(self, c: Person, mother: Person | None) -> None:
        r = self.rng
        age = (REF - c.dob).days / 365.25
        self.gp_records(c)
        if age < 5 and r.random() < 0.85:
            self.hv_record(c, self.t_in_window(), mother)
        if 16 <= age < 18 and r.random() < 0.4:
            self.count("adolescent_adult_records")
            source = "maternity" if c.sex == "F" and r.random() < 0.6 else "gp"
            pc, gp = self.moved(c.postcode) if r.random() < 0.4 else (c.postcode, c.gp)
            nhs = self.nhs_for(c, "adult")
            lid = self.local(source, "RX1A" if source == "maternity" else gp + "-A")
            self.emit(self.t_in_window(), c, source, lid, kind="adolescent-adult", nhs=nhs,
                      status=self.status(source, nhs), postcode=pc, gp=gp, nickname_rate=0.3)

    def family_with_children(self) -> None:
        r = self.rng
        pc, gp = self.address()
        fam = self.family_name()
        mother = self.person("F", date.fromordinal(REF.toordinal() - r.randrange(22 * 365, 55 * 365)), fam, pc, gp)
        adults = [mother]
        if r.random() < 0.65:
            adults.append(self.person("M", mother.dob - timedelta(days=r.randrange(-900, 3000)),
                                      fam if r.random() < 0.6 else self.family_name(), pc, gp))
        kids = []
        youngest = REF.toordinal() - 30
        for _ in range(r.choices((1, 2, 3), (0.4, 0.4, 0.2))[0]):
            lo = max(mother.dob.toordinal() + 16 * 365, REF.toordinal() - 18 * 365 + 1)
            if lo >= youngest:
                break
            k = self.person(r.choice("FM"), date.fromordinal(r.randrange(lo, youngest)),
                            fam if r.random() < 0.85 else self.family_name(), pc, gp)
            k.mother = mother
            kids.append(k)
        if any((REF - k.dob).days < 5 * 365 for k in kids) and r.random() < 0.4:
            mother.hv_id = self.local("health-visiting", "HV")
            nhs = self.nhs_for(mother, "health-visiting")
            self.emit(self.t_in_window(), mother, "health-visiting", mother.hv_id, kind="hv-mother", nhs=nhs,
                      status=self.status("health-visiting", nhs))
        for a in adults:
            self.gp_records(a)
        for k in kids:
            self.child_records(k, mother)

    def adults(self) -> None:
        r = self.rng
        pc, gp = self.address()
        fam = self.family_name()
        first = self.person(r.choice("FM"), date.fromordinal(REF.toordinal() - r.randrange(18 * 365, 90 * 365)),
                            fam, pc, gp)
        self.gp_records(first)
        if r.random() < 0.5:
            other = self.person("F" if first.sex == "M" else "M",
                                first.dob - timedelta(days=r.randrange(-3000, 3000)),
                                fam if r.random() < 0.6 else self.family_name(), pc, gp)
            self.gp_records(other)

    def run(self) -> None:
        r = self.rng
        while self.written < self.n_records:
            x = r.random()
            if x < 0.32:
                self.newborn_family()
            elif x < 0.72:
                self.family_with_children()
            else:
                self.adults()
        for f in self.bucket_files:
            f.close()

    def write(self, path: Path) -> int:
        n = 0
        with path.open("w", newline="") as out:
            w = csv.writer(out, lineterminator="\n")
            w.writerow(COLUMNS)
            for bp in self.bucket_paths:
                with bp.open(newline="") as fh:
                    rows = sorted(csv.reader(fh), key=lambda row: (float(row[0]), int(row[1])))
                for row in rows:
                    n += 1
                    w.writerow([f"R{n:07d}", *row[2:]])
                bp.unlink()
        return n


def write_dataset(path: Path, n_records: int = 100_000, seed: int = 0) -> dict[str, Any]:
    """Write the labelled CSV (header ``COLUMNS``, event-time order) and return counts of what it holds.
    Slightly more than ``n_records`` rows may be written (the last household is completed)."""
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        gen = _Gen(seed, n_records, Path(tmp))
        gen.run()
        n = gen.write(path)
    stats = {"records": n, "persons": gen.next_pid, "seed": seed, "reference_date": REF.isoformat()}
    stats.update(sorted(gen.stats.items()))
    return stats


if __name__ == "__main__":  # pragma: no cover
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(json.dumps(write_dataset(a.path, a.n, a.seed)))
