"""The engine: the model compiled to SQL that runs where the data lives, scoring as of an instant."""
from leadscore.engine.compile import Compiled, Sources, compile_model
from leadscore.engine.current import ScoreChange, refresh_scores
from leadscore.engine.explain import UnknownLead, explain_lead
from leadscore.engine.score import RunResult, save_scores, score_and_save, score_leads

__all__ = ["ScoreChange", "refresh_scores", "Compiled", "Sources", "compile_model", "explain_lead", "UnknownLead", "RunResult", "save_scores",
           "score_and_save", "score_leads"]
