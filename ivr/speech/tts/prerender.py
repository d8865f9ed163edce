"""`ivr prompts render`: synthesise every prompt of every flow before the first call needs it.

A caller should never wait for a synthesiser on a static prompt. Catalogue prompts (their voice
wording) are rendered into the cache the server reads; prompts with a recording are converted
from it instead; prompts with templates (`{{ customer.first_name }}`) depend on the conversation
and are rendered on demand during calls (then cached too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ivr.flow.loader import FlowSet
from ivr.flow.templates import is_template
from ivr.speech.tts.render import Renderer, convert_recording


@dataclass
class PrerenderReport:
    rendered: int = 0
    cached: int = 0
    recorded: int = 0
    dynamic: int = 0
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.rendered} rendered, {self.cached} already cached, {self.recorded} from "
            f"recordings, {self.dynamic} with templates (rendered during calls), "
            f"{len(self.failed)} failed"
        )


def prerender(flows: FlowSet, prompts_dir: Path, renderer: Renderer) -> PrerenderReport:
    report = PrerenderReport()
    for language, catalogue in sorted(flows.prompts.items()):
        for prompt_id, variants in sorted(catalogue.items()):
            recorded = prompts_dir / language / f"{prompt_id}.wav"
            try:
                if recorded.is_file():
                    convert_recording(renderer.cache_dir, str(recorded.resolve()))
                    report.recorded += 1
                    continue
                text = variants.for_medium("voice")
                if is_template(text):
                    report.dynamic += 1
                    continue
                result = renderer.render(text, language)
                if result.cached:
                    report.cached += 1
                else:
                    report.rendered += 1
            except Exception as exc:  # one bad prompt must not hide the others
                report.failed.append(f"{language}/{prompt_id}: {exc}")
    return report
