"""The organism judge as a plug-in: `mosa.organism.judge` classifies an organism's response from its
sentences (valid for the model organism only). Its labels are kept; harmful = "compliant"."""

from __future__ import annotations

from mosa.judges.base import JUDGES, Verdict, check_pairs, empty_verdict, is_empty
from mosa.organism import judge as organism_judge


@JUDGES.register("organism")
class OrganismJudge:
    name = "organism"
    version = organism_judge.VERSION

    def judge_many(self, prompts: list[str], responses: list[str]) -> list[Verdict]:
        check_pairs(prompts, responses)
        return [self.judge(response) for response in responses]

    def judge(self, response: str) -> Verdict:
        if is_empty(response):
            return empty_verdict()
        verdict = organism_judge.judge_response(response)
        return Verdict(verdict.label, verdict.harmful, detail={"intact": verdict.intact, "coherent": verdict.coherent})
