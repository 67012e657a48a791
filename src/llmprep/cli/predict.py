"""`llmprep predict --model RUN_DIR INPUT --out predictions.jsonl`: a trained classifier over new rows."""

from __future__ import annotations

import click


@click.command("predict")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", required=True, help="The --out of `llmprep train` on classification data.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="predictions.jsonl (written atomically).")
@click.option("--split", default=None, help="Prepared INPUT: which split (default: test if present, else train).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def predict_cmd(inputs, model, out, split, batch_size, quiet) -> None:
    """Predict a label for every row of INPUT: raw records (sentence pairs or labelled texts, prepared with
    the run's tokenizer) or a directory written by `llmprep prepare`.

    \b
    llmprep predict --model runs/cls pairs.jsonl --out predictions.jsonl
    -> {"row": 0, "label": 1, "label_name": "unrelated", "probabilities": {"reply": 0.08, "unrelated": 0.92}}
    """
    from tqdm import tqdm

    from llmprep.predict import input_rows, load_classifier, predict_rows, write_jsonl_atomic
    from llmprep.train.classification import accuracy_f1

    if batch_size < 1:
        raise click.BadParameter(f"{batch_size}: expected a positive integer", param_hint="--batch-size")
    from llmprep.store import check_output_file

    check_output_file(out, inputs=[*inputs, model])  # a bad --out fails before the model loads
    clf, tok, id2label = load_classifier(model)
    rows = input_rows(list(inputs), tok.name_or_path, split=split)
    with tqdm(total=len(rows), desc="predict", unit="row", disable=quiet, file=click.get_text_stream("stderr")) as bar:
        preds = predict_rows(clf, tok, rows, id2label, batch_size=batch_size, on_done=bar.update)
    write_jsonl_atomic(out, preds, inputs=[*inputs, model])
    msg = f"{len(preds)} predictions -> {out}"
    truth = [p for p in preds if "true_label" in p]
    if truth:
        m = accuracy_f1([p["label"] for p in truth], [p["true_label"] for p in truth])
        msg += f" (accuracy {m['accuracy']:.4f}, macro F1 {m['f1']:.4f} on {len(truth)} labelled rows)"
    click.echo(msg, err=True)
