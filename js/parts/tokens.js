// What the token view writes, as pure functions of its state (checked by js/tests).

/** A chip's tooltip: the token, its position and id, and how confidently it was predicted. */
export function chipTitle(label, i, confidence) {
  return i === 0 ? label : `${label}: p = ${(confidence * 100).toFixed(1)}% as predicted`;
}

/** "name 12.3%" for each of a position's top next tokens (probabilities row-major [seq, k]). */
export function nextTokens(names, probs, i, k) {
  return names.map((name, j) => `${name} ${(probs[i * k + j] * 100).toFixed(1)}%`);
}

/** The line under the chips. */
export function infoText(token, predictions) {
  if (token < 0) return "Click a token to see what the model predicts after it.";
  if (predictions.length) return `after token ${token}: ${predictions.join(" · ")}`;
  return `token ${token} selected`;
}
