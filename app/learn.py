"""Learn: the interacting layer on the current sample, one step at a time, real numbers beside the paper's equations."""
from __future__ import annotations

import numpy as np
import streamlit as st

from app import attention_readings, samples, state, views
from autoint.figures import agreement_scatter, matrix_heatmap
from autoint.explain.interactions import pair_index, pair_ranks, verdict
from autoint.explain.readings import PAPER_READING, READINGS, pairs_of
from autoint.explain.steps import layer_steps

now = samples.current()
folder, run_path, model, values = now.key, now.run_path, now.model, now.values

st.title("Learn: inside one interacting layer")
st.caption(f"The current sample ({now.caption}; change it on Explore) goes through the model's own weights. Every "
           "number below is what the model computes.")
if model.config.layers == 0:
    st.info("This model has no interacting layer (0 layers); pick or train one with at least one layer.")
    st.stop()

c1, c2, c3, c4 = st.columns(4)
layer = c1.selectbox("Layer", list(range(1, model.config.layers + 1)), key="learn_layer")
head = c2.selectbox("Head h", list(range(1, model.config.heads + 1)), key="learn_head")
steps = layer_steps(model, values, layer)
labels = steps.labels
m = c3.selectbox("Query field m (worked example)", list(range(len(labels))), format_func=labels.__getitem__,
                 key="learn_query")
state.keep("learn_key", min(1, len(labels) - 1))  # through session state: a link may set it (app/links.py)
k = c4.selectbox("Key field k (worked example)", list(range(len(labels))), format_func=labels.__getitem__,
                 key="learn_key")
h = head - 1
dims = lambda n, symbol: [f"{symbol}{i + 1}" for i in range(n)]


def step(number: int, title: str, figure, equation: str, text: str, key: str) -> None:
    st.subheader(f"{number}. {title}")
    numbers, maths = st.columns([3, 2])
    with numbers:
        state.show_figure(figure, f"learn-{key}", f"learn_{key}")
    with maths:
        st.latex(equation)
        st.markdown(text)


def vector(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values[:6]) + (", …]" if len(values) > 6 else "]")


inputs = steps.inputs
step(1, "Field embeddings" if layer == 1 else f"Input: the output of layer {layer - 1}",
     matrix_heatmap(inputs, labels, dims(inputs.shape[1], "dim "), title="e_m, one row per field", diverging=True),
     r"\mathbf{e}_i = \mathbf{V}_i \mathbf{x}_i \quad \mathbf{e}_j = \tfrac{1}{q}\mathbf{V}_j \mathbf{x}_j"
     r" \quad \mathbf{e}_m = \mathbf{v}_m x_m" if layer == 1 else r"\mathbf{e}_m = \mathbf{e}^{Res}_m \text{ of layer }"
     + str(layer - 1),
     "Eqs. 2-4: each categorical field looks up one row of its embedding table"
     + "".join(f", {what} ({', '.join(f.name for f in model.schema.of_kind(kind)[:3])}) {does}"
               for kind, what, does in (("multivalued", "a multi-valued field", "averages the rows of its q values"),
                                        ("numeric", "a numeric field", "scales one vector by its value"))
               if model.schema.of_kind(kind))
     + f". Every field is now a vector of {inputs.shape[1]} numbers." if layer == 1 else
     "A deeper layer combines the previous layer's outputs, so its combinations are of higher order.", "inputs")

projections = np.concatenate([steps.query[h], steps.key[h], steps.value[h]], axis=1)
width = steps.query.shape[-1]
step(2, f"Query, key and value of head {head}",
     matrix_heatmap(projections, labels, dims(width, "q") + dims(width, "k") + dims(width, "v"),
                    title=f"W_Query e_m | W_Key e_m | W_Value e_m (head {head})", diverging=True),
     r"\mathbf{q}_m = \mathbf{W}^{(h)}_{Query}\mathbf{e}_m,\ \mathbf{k}_k = \mathbf{W}^{(h)}_{Key}\mathbf{e}_k,"
     r"\ \mathbf{v}_k = \mathbf{W}^{(h)}_{Value}\mathbf{e}_k",
     f"Three learnt {width} × {inputs.shape[1]} matrices per head map each field into a query (what it looks for), "
     f"a key (what it offers) and a value (what it passes on). Here q of {labels[m]} is "
     f"{vector(steps.query[h, m])}.", "qkv")

score = float(steps.query[h, m] @ steps.key[h, k])
scale_note = f" ÷ √{width}" if steps.scaled else ""
step(3, "Scores: how well each query matches each key",
     matrix_heatmap(steps.scores[h], labels, labels, title=f"ψ(e_m, e_k), head {head}", diverging=True,
                    x_title="key field k", y_title="query field m"),
     r"\psi^{(h)}(\mathbf{e}_m, \mathbf{e}_k) = \langle \mathbf{W}^{(h)}_{Query}\mathbf{e}_m,"
     r" \mathbf{W}^{(h)}_{Key}\mathbf{e}_k \rangle" + (r" / \sqrt{d'}" if steps.scaled else ""),
     f"An inner product per pair. Worked example: ⟨q of {labels[m]}, k of {labels[k]}⟩{scale_note} = "
     f"**{score / (np.sqrt(width) if steps.scaled else 1):.4f}**, the cell in row {labels[m]}, column {labels[k]}.",
     "scores")

row = steps.scores[h, m]
step(4, "Softmax: attention weights",
     matrix_heatmap(steps.attention[h], labels, labels, title=f"α_(m,k), head {head}: rows sum to 1",
                    x_title="key field k", y_title="query field m"),
     r"\alpha^{(h)}_{m,k} = \frac{\exp(\psi^{(h)}(\mathbf{e}_m, \mathbf{e}_k))}"
     r"{\sum_{l=1}^{M} \exp(\psi^{(h)}(\mathbf{e}_m, \mathbf{e}_l))}",
     f"Eq. 5: each row of scores becomes a probability distribution. For {labels[m]}: "
     f"exp({row[k]:.3f}) / Σ exp(row) = **{steps.attention[h, m, k]:.4f}**. These are the weights the Explore "
     "page draws.", "attention")

step(5, "Weighted values",
     matrix_heatmap(steps.weighted[h], labels, dims(width, "dim "), title=f"ẽ^(h)_m, head {head}", diverging=True),
     r"\widetilde{\mathbf{e}}^{(h)}_m = \sum_{k=1}^{M} \alpha^{(h)}_{m,k}\, \mathbf{W}^{(h)}_{Value}\mathbf{e}_k",
     f"Eq. 6: each field's new vector is the attention-weighted mix of all value vectors; that mix is a learnt "
     f"combinatorial feature. {labels[m]} now holds {vector(steps.weighted[h, m])}.", "weighted")

heads = steps.query.shape[0]
step(6, "All heads side by side",
     matrix_heatmap(steps.concatenated, labels, [f"h{i // width + 1}·{i % width + 1}" for i in range(heads * width)],
                    title="ẽ_m: the heads concatenated", diverging=True),
     r"\widetilde{\mathbf{e}}_m = \widetilde{\mathbf{e}}^{(1)}_m \oplus \widetilde{\mathbf{e}}^{(2)}_m \oplus \cdots"
     r" \oplus \widetilde{\mathbf{e}}^{(H)}_m",
     f"Eq. 7: the {heads} heads look at different subspaces; their results are stacked into one vector of "
     f"{heads * width} numbers per field.", "concatenated")

if steps.residual is not None:
    step(7, "Residual connection",
         matrix_heatmap(steps.pre_activation, labels, dims(heads * width, "dim "),
                        title="ẽ_m + W_Res e_m (before the ReLU)", diverging=True),
         r"\widetilde{\mathbf{e}}_m + \mathbf{W}_{Res}\,\mathbf{e}_m",
         f"Eq. 8, inside: the field's own input, projected by W_Res, is added back, so the raw field survives "
         f"next to its combinations. For {labels[m]}, W_Res e_m is {vector(steps.residual[m])}.", "residual")
step(8 if steps.residual is not None else 7, "ReLU: the layer's output",
     matrix_heatmap(steps.output, labels, dims(heads * width, "dim "), title="e^Res_m, the output of this layer"),
     r"\mathbf{e}^{Res}_m = \mathrm{ReLU}(\widetilde{\mathbf{e}}_m + \mathbf{W}_{Res}\,\mathbf{e}_m)"
     if steps.residual is not None else r"\mathbf{e}^{Res}_m = \mathrm{ReLU}(\widetilde{\mathbf{e}}_m)",
     "Eq. 8: negative entries become 0. "
     + ("This model then normalises each row (layer norm). " if steps.layer_norm else "")
     + ("The next layer takes these as its input." if layer < model.config.layers else
        "Eq. 9 then concatenates all fields' outputs and a logistic regression gives the CTR."), "output")

st.header("Attention is not interaction")
explanation = views.explanation(run_path, folder, values, interaction_kind="mean")
F = len(labels)
fields = explanation.interactions.fields  # the field names, in the model's order
P = len(pair_index(F))
measured = explanation.interactions
strength = np.abs(measured.pairs)  # (P,) |k-SII|, pair_index order
flat = explanation.near_uniform
st.markdown(
    "The paper reads attention as the explanation: a large α_(m,k) would mean the model combined fields m and k. "
    "That is one reading of the attention, raw α, **the paper's reading**, and the one the steps above compute. "
    "The same forward pass can be read other ways (weighting α by the value vector's length, by the gradient, "
    "zeroing an edge and watching the logit, ...); each is scored here against what the model measurably uses.")
reading, scored = attention_readings.reading_choice("learn", run_path, folder)
chosen = explanation.readings[reading]
title = READINGS[reading].title
reading_pairs = pairs_of(chosen.matrix)  # (P,) both directions averaged, pair_index order
every_pair = [(fields[i], fields[j]) for i, j in pair_index(F)]
top_reading = next(r for r in pair_ranks(reading_pairs, fields, every_pair) if r["rank"] == 1)
top_measured = measured.ranked_pairs()[0]  # {"fields", "value", "strength"}, strongest first
in_interactions = pair_ranks(strength, fields, [top_reading["pair"]])[0]
in_reading = pair_ranks(reading_pairs, fields, [top_measured["fields"]])[0]
weight = (lambda value: f"mean weight {value:.3f} against {1 / F:.3f} for uniform attention"
          if reading == PAPER_READING else f"{title} {value:.3g}")
raw = explanation.readings[PAPER_READING]
st.markdown(
    f"On **this sample** ({now.caption}), with the model in use, read as **{title}**:\n\n"
    f"- Its strongest pair is **{' × '.join(top_reading['pair'])}**: {weight(top_reading['value'])}. Among the "
    f"model's measured interactions it ranks **{in_interactions['rank']} of {P}** (|k-SII| "
    f"{in_interactions['value']:.3f} logit).\n"
    f"- The strongest measured interaction is **{' × '.join(top_measured['fields'])}**: "
    f"{top_measured['value']:+.3f} logit. {title[:1].upper() + title[1:]} ranks it **{in_reading['rank']} of {P}** "
    f"({weight(in_reading['value'])}).\n"
    f"- Over all {P} pairs, {verdict(chosen.agreement, P, subject=title)}.\n"
    + (f"- Raw α, the paper's reading: {verdict(raw.agreement, P, subject='raw α')}.\n"
       if reading != PAPER_READING else "")
    + f"- Raw α's heads have an entropy from {explanation.head_entropy.min():.2f} to "
      f"{explanation.head_entropy.max():.2f} of log F (1 = uniform); {int(flat.sum())} of {flat.size} heads keep every "
      f"weight within 0.02 of 1/{F}.")
(st.success if np.isfinite(chosen.agreement) and chosen.agreement >= 0.5 else st.warning)(
    f"**Verdict:** {verdict(chosen.agreement, P, subject=title)}.", icon=":material/balance:")
st.markdown(
    "**Why they differ.** A weight α_(m,k) says how much of field k's value vector is mixed into field m's new "
    "representation (Eq. 6), nothing more. The residual W_Res e_m (Eq. 8) carries every field past the attention, "
    "later layers mix the mixtures again, and Eq. 9's weights can amplify or ignore any of it, so a large weight can "
    "end up changing nothing and a tiny one a lot. Softmax rows also always sum to 1: a head that learnt nothing "
    "still spreads 1/F everywhere, which looks like a picture. The interaction asks the model itself: the "
    "prediction with both fields, minus with each alone, plus with neither (averaged over the other fields' "
    "presence, as Shapley values are). It is measured, not read off the weights, and it adds up, with the main "
    "effects, to the logit minus the baseline's logit "
    f"(here the gap is {measured.efficiency_gap:.1e}). The other readings put back part of what raw α leaves out "
    "(the value vector's size, the path to the logit); whether that helps is what their ρ says.")
state.show_figure(agreement_scatter(reading_pairs, strength, [" × ".join(pair) for pair in every_pair],
                                    rho=chosen.agreement, uniform_weight=1 / F if reading == PAPER_READING else None,
                                    x_title=f"{title} between the two fields (both directions averaged)",
                                    title=f"This sample's field pairs: {title} vs measured interaction"),
                  "learn-attention-vs-interaction", "learn_agreement")
st.caption("The Explore page draws both maps side by side for any sample, under any reading; Dataset correlations "
           "does it over the test split.")
