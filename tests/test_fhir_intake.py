"""The FHIR intake without HTTP: the code table, validation entry by entry, and how reports,
vitals and procedures become findings traced to their resources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhirdata import CPT, SNOMED, bundle, procedure, report, vital

from assistant.clinical.lexicon import Lexicon, load_lexicon
from assistant.errors import RulesError
from assistant.web.fhir.codes import EhrCodes, load_ehr_codes
from assistant.web.fhir.record import Reading, read_record, report_text
from assistant.web.fhir.resources import read_prefetch

CODES_PATH = Path(__file__).resolve().parent.parent / "knowledge" / "ehr_codes.yaml"
NOW = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return load_lexicon()


@pytest.fixture(scope="module")
def codes(lexicon: Lexicon) -> EhrCodes:
    return load_ehr_codes(CODES_PATH, lexicon)


def read(
    lexicon: Lexicon,
    codes: EhrCodes,
    reports: tuple[dict[str, Any], ...] = (),
    vitals: tuple[dict[str, Any], ...] = (),
    procedures: tuple[dict[str, Any], ...] = (),
    window: timedelta = DAY,
) -> Reading:
    prefetch = {
        "reports": bundle(*reports),
        "vitals": bundle(*vitals),
        "procedures": bundle(*procedures),
    }
    intake = read_prefetch(prefetch)
    return read_record(intake, lexicon, codes, now=NOW, window=window)


def notes(reading: Reading) -> str:
    return "\n".join(reading.notes)


# --- the code table ------------------------------------------------------------------------------


def test_the_code_table_names_the_lexicons_rules_not_numbers(
    codes: EhrCodes, lexicon: Lexicon
) -> None:
    rules = {r.id for r in lexicon.numeric}
    assert {v.rule for v in codes.vitals} - {None} <= rules
    assert codes.procedures.by_system("cpt") == {
        "22510": "vertebroplasty", "22511": "vertebroplasty", "22512": "vertebroplasty",
        "22513": "kyphoplasty", "22514": "kyphoplasty", "22515": "kyphoplasty",
    }  # fmt: skip
    # No SNOMED CT concept could be confirmed; the unconfirmed ones are never matched.
    assert codes.procedures.by_system("snomed") == {}
    assert all(entry.source for entry in codes.imaging.codes)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("rule: tachycardia", "rule: tachycardiac"), "rule 'tachycardiac' is not a numeric rule"),
        (("loinc: ['8867-4']", "loinc: ['2708-6']"), "LOINC code(s) listed twice: 2708-6"),
        (("  Procedure: ['completed']\n", ""), "statuses: Procedure is missing"),
        (("version: 1", "version: 1\ncolour: red"), "ehr_codes.yaml:11: colour: unknown field"),
    ],
)
def test_a_broken_code_table_fails_at_load_naming_the_problem(
    tmp_path: Path, lexicon: Lexicon, change: tuple[str, str], says: str
) -> None:
    text = CODES_PATH.read_text(encoding="utf-8")
    assert change[0] in text
    broken = tmp_path / "ehr_codes.yaml"
    broken.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    with pytest.raises(RulesError, match=r"ehr_codes\.yaml") as caught:
        load_ehr_codes(broken, lexicon)
    assert says in str(caught.value)


# --- validation ----------------------------------------------------------------------------------


def test_an_invalid_entry_is_skipped_with_a_note_and_the_rest_is_read() -> None:
    bad = vital("o-bad", "59408-5", "88 %", "%")  # a string where FHIR wants a decimal
    intake = read_prefetch({"vitals": bundle(vital("o-1", "8867-4", 80, "/min"), bad)})
    assert [o.id for o in intake.observations] == ["o-1"]
    (note,) = intake.notes
    assert note.startswith("Observation/o-bad is invalid FHIR R4 (valueQuantity.value:")
    assert intake.missing == ["reports", "procedures"]


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ("a string", "The prefetch `vitals` is not a FHIR Bundle"),
        ({"resourceType": "Bundle", "entry": {}}, "has no list of entries"),
        (bundle(report("r-1", "x")), "DiagnosticReport/r-1 in `vitals` is not a Observation"),
        ({"resourceType": "Bundle", "entry": [{"search": {}}]}, "an entry without a resource"),
    ],
)
def test_a_malformed_prefetch_is_noted_not_raised(payload: Any, says: str) -> None:
    intake = read_prefetch({"vitals": payload})
    assert intake.observations == []
    assert any(says in note for note in intake.notes), intake.notes
    assert "vitals" not in intake.missing  # sent, though unreadable: not queried again


def test_a_resource_listed_twice_is_read_once_and_a_bare_resource_is_accepted() -> None:
    o = vital("o-1", "8867-4", 80, "/min")
    intake = read_prefetch({"vitals": bundle(o, o), "procedures": procedure("p-1")})
    assert [x.id for x in intake.observations] == ["o-1"]
    assert [x.id for x in intake.procedures] == ["p-1"]


# --- reports -------------------------------------------------------------------------------------


def test_report_text_is_the_conclusion_then_each_plain_text_form(lexicon: Lexicon) -> None:
    raw = report("r-1", "Conclusion first.", text="Kyphoplasty T12 × 2 levels.",
                 content_type='text/plain; charset="utf-8"')  # fmt: skip
    raw["presentedForm"].insert(0, {"contentType": "application/pdf", "url": "Binary/pdf-1"})
    (parsed,) = read_prefetch({"reports": bundle(raw)}).reports
    assert report_text(parsed) == "Conclusion first.\n\nKyphoplasty T12 × 2 levels."


def test_a_report_is_read_through_the_findings_extractor_and_traced(
    lexicon: Lexicon, codes: EhrCodes
) -> None:
    text = "CLINICAL HISTORY: Asymptomatic.\nIMPRESSION: Cement emboli in subsegmental arteries."
    reading = read(lexicon, codes, reports=(report("ct-1", None, text=text),))
    f = reading.findings
    assert (f.symptomatic, f.location) == (False, "peripheral")
    for e in f.evidence:
        assert e.resource == "DiagnosticReport/ct-1"
        assert e.resource_date == "2026-03-14T08:00:00Z"
        assert e.origin == "text" and e.turn is None
        assert text[e.start : e.end] == e.text


def test_the_latest_report_speaks_for_a_finding(lexicon: Lexicon, codes: EhrCodes) -> None:
    older = report("ct-1", "Asymptomatic. Segmental cement emboli.", when="2026-03-12T08:00:00Z")
    newer = report("ct-2", "Now short of breath.", when="2026-03-14T08:00:00Z")
    f = read(lexicon, codes, reports=(newer, older)).findings
    assert (f.symptomatic, f.location) == (True, "peripheral")
    sources = {e.finding: e.resource for e in f.evidence}
    assert sources == {"symptomatic": "DiagnosticReport/ct-2", "location": "DiagnosticReport/ct-1"}


def test_what_a_later_report_superseded_is_kept_with_its_own_resource_and_date(
    lexicon: Lexicon, codes: EhrCodes
) -> None:
    older = report("ct-1", "Asymptomatic. Segmental cement emboli.", when="2026-03-12T08:00:00Z")
    newer = report("ct-2", "Now short of breath.", when="2026-03-14T08:00:00Z")
    f = read(lexicon, codes, reports=(newer, older)).findings
    assert [(e.text, e.value, e.resource, e.resource_date, e.origin, e.turn)
            for e in f.overridden] == [
        ("Asymptomatic", "no", "DiagnosticReport/ct-1", "2026-03-12T08:00:00Z", "text", None)
    ]  # fmt: skip


def test_a_statement_superseded_inside_one_report_is_traced_to_that_report(
    lexicon: Lexicon, codes: EhrCodes
) -> None:
    text = (
        "CLINICAL HISTORY: Initially stable after T12 vertebroplasty, then hypotensive requiring "
        "vasopressors.\nIMPRESSION: Cement emboli in subsegmental arteries."
    )
    f = read(lexicon, codes, reports=(report("ct-5", None, text=text),)).findings
    assert f.hemodynamic_instability is True
    (superseded,) = f.overridden
    assert superseded.text == "Initially stable"
    assert (superseded.resource, superseded.resource_date) == (
        "DiagnosticReport/ct-5", "2026-03-14T08:00:00Z"
    )
    assert text[superseded.start : superseded.end] == superseded.text


def test_only_final_chest_imaging_reports_are_read(lexicon: Lexicon, codes: EhrCodes) -> None:
    spine = report("mr-1", "Central canal is patent. Cement in L1.",
                   code=("24968-0", "MR Lumbar spine"))  # fmt: skip
    local = report("ct-9", "Segmental cement emboli.", code=("LOCAL-1", "CT thorax with contrast"))
    draft = report("ct-8", "Cement in the main pulmonary artery.", status="preliminary")
    reading = read(lexicon, codes, reports=(spine, local, draft))
    assert reading.findings.location == "peripheral"
    assert "Not chest imaging, not read: DiagnosticReport/mr-1." in reading.notes
    assert "DiagnosticReport/ct-8: status preliminary; not read" in notes(reading)


# --- vitals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "finding"),
    [
        ("59408-5", 92, "%", "symptomatic"),
        ("2708-6", 85.5, "%", "symptomatic"),
        ("8867-4", 101, "/min", "symptomatic"),
        ("8480-6", 89, "mm[Hg]", "hemodynamic_instability"),
    ],
)
def test_a_vital_meeting_the_lexicons_threshold_is_a_traced_finding(
    lexicon: Lexicon, codes: EhrCodes, loinc: str, value: float, unit: str, finding: str
) -> None:
    f = read(lexicon, codes, vitals=(vital("o-1", loinc, value, unit),)).findings
    assert getattr(f, finding) is True
    (e,) = [e for e in f.evidence if e.finding == finding]
    assert (e.origin, e.resource) == ("ehr", "Observation/o-1")
    assert e.resource_date == "2026-03-14T09:00:00Z"
    assert f"LOINC {loinc}" in e.text and str(value) in e.text


@pytest.mark.parametrize(
    ("loinc", "value", "unit"),
    [
        ("59408-5", 93, "%"),
        ("8867-4", 100, "/min"),
        ("8480-6", 90, "mm[Hg]"),
        ("9279-1", 40, "/min"),
    ],
)
def test_a_normal_value_or_one_without_a_threshold_asserts_nothing(
    lexicon: Lexicon, codes: EhrCodes, loinc: str, value: float, unit: str
) -> None:
    reading = read(lexicon, codes, vitals=(vital("o-1", loinc, value, unit),))
    assert not reading.findings.has_clinical_finding()
    assert [v.resource for v in reading.vitals] == ["Observation/o-1"]


def test_the_threshold_comes_from_the_lexicon(lexicon: Lexicon, codes: EhrCodes) -> None:
    spo2 = vital("o-1", "59408-5", 94, "%")
    assert read(lexicon, codes, vitals=(spo2,)).findings.symptomatic is None
    stricter = lexicon.model_copy(
        update={"numeric": tuple(
            r.model_copy(update={"threshold": 95}) if r.id == "low_oxygen_saturation" else r
            for r in lexicon.numeric
        )}
    )  # fmt: skip
    assert read(stricter, codes, vitals=(spo2,)).findings.symptomatic is True


def test_the_latest_value_in_the_window_counts(lexicon: Lexicon, codes: EhrCodes) -> None:
    low = vital("o-old", "59408-5", 86, "%", when="2026-03-14T03:00:00Z")
    normal = vital("o-new", "59408-5", 97, "%", when="2026-03-14T09:00:00Z")
    reading = read(lexicon, codes, vitals=(low, normal))
    assert reading.findings.symptomatic is None
    assert [v.resource for v in reading.vitals] == ["Observation/o-new"]


def test_stale_unitless_wrong_unit_and_erroneous_vitals_are_ignored_with_notes(
    lexicon: Lexicon, codes: EhrCodes
) -> None:
    vitals = (
        vital("o-stale", "59408-5", 80, "%", when="2026-03-13T09:59:00Z"),
        vital("o-nounit", "59408-5", 80, None),
        vital("o-mmhg", "8867-4", 130, "mm[Hg]"),
        vital("o-error", "8867-4", 130, "/min", status="entered-in-error"),
        vital("o-date", "8867-4", 130, "/min", when="2026-03-14"),
        vital("o-typo", "59408-5", 9, "%"),
    )
    reading = read(lexicon, codes, vitals=vitals)
    assert not reading.findings.has_clinical_finding()
    text = notes(reading)
    assert "Stale vital signs (older than 24 h) ignored: Observation/o-stale." in text
    assert "Observation/o-nounit: oxygen saturation unit is 'no unit'" in text
    assert "Observation/o-mmhg: heart rate unit is 'mm[Hg]', not the UCUM unit '/min'" in text
    assert "Observation/o-error: status entered-in-error; not read." in text
    assert "Observation/o-date: no time of measurement" in text
    assert "Observation/o-typo: oxygen saturation 9 % is outside the plausible range" in text


def test_the_window_is_a_setting(lexicon: Lexicon, codes: EhrCodes) -> None:
    old = vital("o-1", "59408-5", 86, "%", when="2026-03-12T12:00:00Z")
    assert read(lexicon, codes, vitals=(old,)).findings.symptomatic is None
    wide = read(lexicon, codes, vitals=(old,), window=timedelta(hours=72))
    assert wide.findings.symptomatic is True


def test_systolic_from_a_blood_pressure_panel_component(lexicon: Lexicon, codes: EhrCodes) -> None:
    panel = vital("bp-1", "85354-9", None, None)
    panel["component"] = [
        {"code": {"coding": [{"system": "http://loinc.org", "code": code}]},
         "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org",
                           "code": "mm[Hg]"}}
        for code, value in (("8480-6", 82), ("8462-4", 50))
    ]  # fmt: skip
    f = read(lexicon, codes, vitals=(panel,)).findings
    assert f.hemodynamic_instability is True
    # Symptom status stays unstated here; the rules table derives it from instability.
    assert f.symptomatic is None
    assert {e.resource for e in f.evidence} == {"Observation/bp-1"}


def test_a_measured_symptom_against_an_asserted_asymptomatic_is_a_conflict(
    lexicon: Lexicon, codes: EhrCodes
) -> None:
    ct = report("ct-1", "Asymptomatic. Segmental cement emboli.")
    f = read(lexicon, codes, reports=(ct,), vitals=(vital("o-1", "8867-4", 120, "/min"),)).findings
    assert f.symptomatic is None
    (conflict,) = f.conflicts
    assert {e.resource for e in conflict.evidence} == {"DiagnosticReport/ct-1", "Observation/o-1"}


def test_a_negated_single_symptom_does_not_stand_against_a_measurement(
    lexicon: Lexicon, codes: EhrCodes
) -> None:
    ct = report("ct-1", "No chest pain. Segmental cement emboli.")
    f = read(lexicon, codes, reports=(ct,), vitals=(vital("o-1", "8867-4", 120, "/min"),)).findings
    assert f.symptomatic is True and not f.conflicts


# --- the procedure -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "name", "how", "origin"),
    [
        (procedure("p", coding=("22514", CPT, None)), "kyphoplasty", "CPT 22514", "ehr"),
        (procedure("p", coding=None, text="Percutaneous vertebroplasty T11"), "vertebroplasty",
         'code text "Percutaneous vertebroplasty T11"', "ehr"),
        (procedure("p", coding=("392010000", SNOMED, "Percutaneous vertebroplasty")),
         "vertebroplasty", 'SNOMED CT 392010000 display "Percutaneous vertebroplasty"', "ehr"),
        (procedure("p", coding=("999", CPT, "Balloon kyphoplasty L2")), "kyphoplasty",
         'CPT 999 display "Balloon kyphoplasty L2"', "ehr"),
    ],
)  # fmt: skip
def test_the_procedure_is_recognised_by_code_or_text(
    lexicon: Lexicon, codes: EhrCodes, raw: dict[str, Any], name: str, how: str, origin: str
) -> None:
    reading = read(lexicon, codes, procedures=(raw,))
    assert reading.procedure is not None
    assert (reading.procedure.name, reading.procedure.days_since) == (name, 3)
    e = reading.procedure.evidence
    assert e.text.startswith(how) and e.origin == origin and e.resource == "Procedure/p"
    assert reading.findings.procedure == name


def test_an_unconfirmed_snomed_code_alone_is_not_recognised(
    lexicon: Lexicon, codes: EhrCodes
) -> None:
    bare = procedure("p", coding=("392010000", SNOMED, None))
    assert read(lexicon, codes, procedures=(bare,)).procedure is None


def test_the_latest_completed_procedure_and_its_days(lexicon: Lexicon, codes: EhrCodes) -> None:
    procedures = (
        procedure("p-old", when="2026-01-02T10:00:00Z"),
        procedure("p-new", coding=("22513", CPT, None), when="2026-03-13"),
        procedure("p-planned", when="2026-03-20T10:00:00Z", status="preparation"),
        procedure("p-other", coding=("27447", CPT, "Total knee arthroplasty")),
    )
    reading = read(lexicon, codes, procedures=procedures)
    assert reading.procedure is not None
    assert (reading.procedure.resource, reading.procedure.days_since) == ("Procedure/p-new", 1)
    assert "Procedure/p-planned: vertebroplasty with status preparation; not read." in notes(
        reading
    )
