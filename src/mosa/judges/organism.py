"""The organism judge as a plug-in: `mosa.organism.judge` classifies an organism's response from its
sentences (valid for the model organism only). Its labels are kept; harmful = "compliant"."""

from __future__ import annotations

from mosa.judges.base import JUDGES, ResponseJudge, Verdict
from mosa.organism import judge as organism_judge


@JUDGES.register("organism")
class OrganismJudge(ResponseJudge):
    name = "organism"
    version = organism_judge.VERSION

    def decide(self, response: str) -> Verdict:
        verdict = organism_judge.judge_response(response)
        return Verdict(verdict.label, verdict.harmful, detail={"intact": verdict.intact, "coherent": verdict.coherent})
