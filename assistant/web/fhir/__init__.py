"""FHIR R4 intake for the CDS Hooks service: validate the EHR's resources, read the findings.

    codes      the code table (knowledge/ehr_codes.yaml): LOINC, UCUM, CPT, statuses
    resources  prefetch Bundles -> validated R4B resources, one entry at a time, with notes
    record     reports, vitals and procedures -> Findings with evidence traced to each resource
    client     the same queries against the EHR's FHIR server when it sends no prefetch
"""
