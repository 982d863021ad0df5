"""Synthetic maternity HL7 v2 messages for benchmarks and load tests (no real data: names are
drawn from a fixed list of invented surnames, NHS numbers from the 999 test range)."""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["nhs_number", "messages"]

_FAMILY = ["SYNTHETIC", "EXAMPLE", "TESTER", "SAMPLE", "DUMMY", "FICTION", "MOCK", "PLACEHOLDER"]
_GIVEN_F = ["Amber", "Bea", "Cara", "Dee", "Eve", "Fay", "Gwen", "Hana", "Isla", "Jade", "Kira", "Lena", "Mia",
            "Nell", "Orla", "Pia", "Rosa", "Tess"]
_GIVEN_M = ["Alfie", "Ben", "Cal", "Dan", "Eli", "Finn", "Gus", "Hal", "Ivo", "Jon", "Kit", "Leo", "Max", "Ned",
            "Otto", "Rex", "Sam", "Ted"]


_START = ["Ash", "Bram", "Cald", "Dun", "Elm", "Fen", "Glen", "Hol", "Kirk", "Lang", "Mar", "Nor", "Oak", "Pen",
          "Ral", "Stan", "Thorn", "Wal"]
_END = ["by", "croft", "dale", "field", "ford", "gate", "ham", "hurst", "ley", "mere", "ridge", "ton", "well", "wick"]


def _surname(rng: random.Random) -> str:
    """Made-up surnames (252 of them), as varied as a small town's, so identity matching sees realistic
    candidate sets (a handful per record, not thousands)."""
    return (rng.choice(_START) + rng.choice(_END)).upper()


def _letters(n: int) -> str:
    return chr(65 + n % 26) + chr(65 + (n // 26) % 26)


def nhs_number(seed: int) -> str:
    """A Modulus 11 valid number in the 999 test range (never issued)."""
    n = seed
    while True:
        body = f"999{n % 10_000_000:07d}"[:9]
        total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1)))
        check = 11 - total % 11
        check = 0 if check == 11 else check
        if check != 10:
            return body + str(check)
        n += 1


def _seg(name: str, fields: dict[int, str]) -> str:
    values = [""] * max(fields)
    for k, v in fields.items():
        values[k - 1] = v
    return "|".join([name, *values])


def _msh(ts: str, event: str, control: str) -> str:
    return f"MSH|^~\\&|MATEPR|RX1|CARETHREAD|CARETHREAD|{ts}||{event}|{control}|P|2.4|||AL|NE||UNICODE UTF-8"


def messages(count: int, *, seed: int = 7) -> Iterator[bytes]:
    """ADT (A01/A04/A08 with NK1 x2, PV1, sometimes a safeguarding OBX) and SIU (S12/S26), ~70/30."""
    rng = random.Random(seed)
    for i in range(count):
        patient = rng.randrange(count // 3 + 1)
        nhs = nhs_number(1000 + patient * 7)
        female = patient % 2 == 0
        person = random.Random(patient)  # the same patient always has the same made-up details
        given = person.choice(_GIVEN_F if female else _GIVEN_M)
        family = _surname(person)
        dob = f"{person.randrange(1990, 2026):04d}{person.randrange(1, 13):02d}{person.randrange(1, 29):02d}"
        father_dob = f"{int(dob[:4]) - person.randrange(17, 41):04d}{person.randrange(1, 13):02d}01"  # a few are teens
        ts = f"2026{1 + i % 12:02d}{1 + i % 28:02d}{8 + i % 10:02d}{i % 60:02d}00"
        pid = _seg("PID", {1: "1", 3: f"{nhs}^^^NHS^NH~M{patient:07d}^^^RX1^MR", 5: f"{family}^{given}^^^^^L", 7: dob,
                           8: "F" if female else "M", 11: f"{patient} Example Road^^Exampletown^^ZZ99 {patient % 9}{_letters(patient)}^GBR^H",
                           13: f"0770090{patient % 10000:04d}^PRN^CP", 32: "NSTS01"})
        if rng.random() < 0.7:
            trigger = rng.choice(["A01", "A04", "A08"])
            segs = [
                _msh(ts, f"ADT^{trigger}^ADT_A01", f"B{i:08d}"), f"EVN|{trigger}|{ts}", pid,
                _seg("PD1", {3: "Example Surgery^^^^^^^^^Y12345"}),
                _seg("NK1", {1: "1", 2: f"{family}^{_GIVEN_M[(patient + 1) % 8]}", 3: "FTH^Father^HL70063", 15: "M",
                             16: father_dob}),
                _seg("NK1", {1: "2", 2: f"{family}^{_GIVEN_F[(patient + 3) % 8]}", 3: "GRP^Grandparent^HL70063"}),
                _seg("PV1", {1: "1", 2: rng.choice("IOE"), 3: "MATWARD^Bay 1^Bed 2^RX1", 10: "OBS",
                             19: f"V{i:08d}^^^RX1", 44: ts}),
            ]
            if rng.random() < 0.1:
                segs.append(_seg("OBX", {1: "1", 2: "CE", 3: "SAFEGUARD^Safeguarding alert^L",
                                         5: "342191000000101^Subject to child protection plan^SCT", 11: "F", 14: "20250101"}))
        else:
            trigger = rng.choice(["S12", "S26"])
            status = "Noshow" if trigger == "S26" else "Booked"
            segs = [
                _msh(ts, f"SIU^{trigger}^SIU_S12", f"B{i:08d}"),
                _seg("SCH", {2: f"APPT-{patient}^MATEPR", 7: "FOLLOWUP^Follow-up^HL70276", 9: "30", 10: "min",
                             11: f"^^^{ts}", 25: status}),
                pid, "RGS|1",
                _seg("AIL", {1: "1", 3: "CLINIC^Room 4^^RX1", 6: ts, 9: "30", 10: "min", 12: status}),
            ]
        yield ("\r".join(segs) + "\r").encode()
