#!/usr/bin/env bash
# The main job: give the model a document and ask it a question about it.
# usage: scripts/demo.sh [TESSERA_BINARY] [MODEL_DIR]
set -eu
bin=${1:-build/tessera}
model=${2:-../shared/models/facts-qwen3-14m}
doc="Valvalford is a city located in Helara. It was founded in 1721 by Pel Isnorwen. About 800,585 people live there. Valvalford is famous for its silver observatories."
system=$(printf 'You answer questions using only the documents below.\n\n[Document 1]\n%s' "$doc")
question="In which year was Valvalford founded?"
echo "document: $doc"
echo "question: $question"
printf 'answer:   '
"$bin" generate -m "$model" --chat --system "$system" -p "$question" -n 64
