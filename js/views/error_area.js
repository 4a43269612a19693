// The shared error area alone: what a composite (views beside bqplot figures) shows its errors
// in, the same box every view has under it.
import { defineView } from "../lib/view.js";

export default defineView(() => {}, { composite: true });
