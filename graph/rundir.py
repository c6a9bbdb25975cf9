"""Where each stage reads and writes inside a run directory (`iirg build --run runs/ml-100k`).

    runs/<name>/
      config.json            resolved configs of every stage run here, plus the git commit
      dataset/               canonical dataset (ingest.schema.Dataset.save)
      store/graph.lbdb       embedded LadybugDB store (+ its .wal; absent when the run uses Neo4j)
      export/                relations + dataset as Parquet/JSONL with manifest.json (graph.export)
      analysis/              segments per evaluated user (train.segments)
      models/<model>/        one folder per evaluated model: recommendations.parquet, metrics.json
      report/                iirg report output: tables (JSON, CSV) and PNG plots
      llm/                   instruction data, adapters and checkpoints (train)
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @classmethod
    def of(cls, root: str | os.PathLike) -> "RunPaths":
        return cls(Path(root))

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def store_dir(self) -> Path:
        """The embedded store's folder, swapped in whole on a rebuild (the database has a .wal beside it)."""
        return self.root / "store"

    @property
    def store(self) -> Path:
        return self.store_dir / "graph.lbdb"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model(self, name: str) -> Path:
        return self.models / name

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def llm(self) -> Path:
        return self.root / "llm"

    def record_config(self, stage: str, config: dict) -> None:
        """Merge one stage's resolved config (and the git commit) into config.json."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "config.json"
        merged = json.loads(path.read_text()) if path.exists() else {}
        merged[stage] = config
        merged["git_commit"] = git_commit()
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(merged, indent=2, default=str))
        os.replace(tmp, path)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
