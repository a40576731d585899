"use strict";
// The page for people (GET /). It speaks the same JSON API as every other client (docs/openapi.json), at paths
// relative to the page, so it works at the root of a server and under an API Gateway stage alike.
(() => {
  const TOP_K = 5;
  // Phone photos are shrunk to this longer side and sent as JPEG: a 12-megapixel photo becomes a few hundred KB
  // instead of megabytes of base64, and the model sees 260 px anyway.
  const MAX_SIDE_PX = 1024;
  const JPEG_QUALITY = 0.88;
  // A photo already this small, in a format every server-side decoder reads, is sent untouched.
  const SEND_AS_IS_BYTES = 1_000_000;
  const SEND_AS_IS_TYPES = new Set(["image/jpeg", "image/png", "image/webp"]);
  const REQUEST_TIMEOUT_MS = 30_000;

  // Every error code of the API (lambda_function/errors.py), and the page's own, as a sentence and what to try.
  const TRY_AGAIN_LATER = "The classifier is busy or restarting. Try again in a few seconds.";
  const TOO_LARGE = "This photo is too large to send. Try a smaller copy of it, or a screenshot of it.";
  const RELOAD = "The request was not understood. Reload the page and try again.";
  const MESSAGES = {
    image_too_large: TOO_LARGE,
    request_too_large: TOO_LARGE,
    too_many_pixels: "This image has too many pixels to analyse. Try a smaller copy of it, or a screenshot of it.",
    unsupported_image: "This file is not a kind of image the classifier reads. Try a JPEG, PNG or WebP photo.",
    undecodable_image:
      "This file could not be read as a photo: it may be damaged, or not a photo at all. Try another file.",
    invalid_base64: "The photo did not arrive intact. Try choosing it again.",
    invalid_url:
      "That does not look like the web address of a photo. It should start with https:// (or http://). " +
      "You can also download the photo and choose it above.",
    url_not_allowed:
      "That web address cannot be used: only public http and https addresses are allowed. " +
      "Download the photo and choose it above instead.",
    upstream_error:
      "The site at that address did not send a photo. Check that the address opens the photo itself, " +
      "not a page around it, or download the photo and choose it above.",
    upstream_timeout:
      "The site at that address took too long to send the photo. Try again later, " +
      "or download the photo and choose it above.",
    bad_request: RELOAD,
    unsupported_content_type: RELOAD,
    method_not_allowed: RELOAD,
    not_found: "This page could not find the classifier. Reload the page and try again.",
    request_timeout: "Sending the photo took too long. Check your connection, or try a smaller photo.",
    deadline_exceeded: "The classifier took too long to answer. Try again in a moment.",
    not_ready: TRY_AGAIN_LATER,
    too_much_decode_memory:
      "This photo is too big to read (its size, shape or format). Save it smaller, as a JPEG or PNG, and choose that.",
    image_too_complex:
      "This photo is stored in a way that takes too long to read. Save it again as an ordinary JPEG or PNG " +
      "(a screenshot works too) and choose that.",
    request_header_too_large: RELOAD,
    server_busy:
      "The classifier is busy fetching other web addresses. Try again in a moment, " +
      "or download the photo and choose it above.",
    busy: TRY_AGAIN_LATER,
    internal_error: "Something went wrong on our side. Try again; if it keeps happening, try another photo.",
    network: "Could not reach the classifier. Check your internet connection and try again.",
    timeout: "No answer came in 30 seconds. Check your connection and try again.",
    missing_url: "Type or paste the web address of a photo first.",
    unreadable_file: "This file could not be opened. Try choosing it again, or choose another file.",
    unknown: "Something unexpected went wrong. Try again, or try another photo.",
  };

  const byId = (id) => document.getElementById(id);
  const ui = {
    file: byId("file"),
    dropZone: byId("drop-zone"),
    urlForm: byId("url-form"),
    url: byId("url"),
    status: byId("status"),
    errorDetail: byId("error-detail"),
    predictions: byId("predictions"),
    preview: byId("preview"),
    previewImage: byId("preview-image"),
    result: byId("result"),
    modelInfo: byId("model-info"),
    breedCount: byId("breed-count"),
    breedList: byId("breed-list"),
  };

  const pageDirectory = location.pathname.endsWith("/") ? location.pathname : `${location.pathname}/`;
  const endpoint = (name) => new URL(name, new URL(pageDirectory, location.origin));
  const percent = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });

  let latestJob = 0; // answers to anything but the newest photo are dropped
  let inFlight = null; // the AbortController of the request being sent
  let previewUrl = null;

  // What the page shows

  function setStatus(text, kind) {
    ui.status.textContent = text;
    ui.status.classList.toggle("error", kind === "error");
    ui.result.classList.toggle("busy", kind === "busy");
    ui.predictions.setAttribute("aria-busy", String(kind === "busy"));
    if (kind === "busy" || kind === "error") ui.predictions.hidden = true;
  }

  function setDetail(text) {
    ui.errorDetail.textContent = text ?? "";
    ui.errorDetail.hidden = !text;
  }

  function showError(code, serverMessage) {
    setStatus(MESSAGES[code] ?? MESSAGES.unknown, "error");
    setDetail(serverMessage ? `Details: ${serverMessage}` : "");
  }

  function showPreview(blob) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = blob ? URL.createObjectURL(blob) : null;
    ui.preview.hidden = !previewUrl;
    if (previewUrl) ui.previewImage.src = previewUrl;
    else ui.previewImage.removeAttribute("src");
  }

  function showAnswer(answer) {
    const [top] = answer.predictions;
    if (answer.cat_detected === false) {
      setStatus("No cat found in this photo.");
      setDetail("If there is a cat in it, try a photo where the cat is larger, sharper or better lit.");
      ui.predictions.replaceChildren();
      ui.predictions.hidden = true;
      return;
    }
    if (answer.breed_identified === false) {
      const named = answer.description ?? "No clear breed";
      setStatus(`${named} — no clear breed; closest: ${top.breed} (${percent.format(top.probability)})`);
      setDetail(
        `${coatLine(answer.coat)}The bars show the breeds this cat looks most like, not a breed it was ` +
          "recognised as: perhaps a mixed-breed cat or a breed this model does not know.",
      );
    } else {
      setStatus(`Most likely: ${top.breed} (${percent.format(top.probability)})`);
      setDetail(coatLine(answer.coat).trim());
    }
    ui.predictions.replaceChildren(...answer.predictions.map(predictionItem));
    ui.predictions.hidden = false;
  }

  function coatLine(coat) {
    if (!coat) return "";
    if (!coat.length) return "Coat length: unclear. ";
    return `Coat: ${coat.length} (${percent.format(coat.probability)}). `;
  }

  function predictionItem({ breed, probability }) {
    const item = document.createElement("li");
    const label = document.createElement("div");
    label.className = "prediction-label";
    const name = document.createElement("span");
    name.className = "prediction-breed";
    name.textContent = breed;
    const share = document.createElement("span");
    share.className = "prediction-percent";
    share.textContent = percent.format(probability);
    label.append(name, share);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("aria-hidden", "true");
    const fill = document.createElement("div");
    fill.className = "bar-fill";
    fill.style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
    bar.append(fill);
    item.append(label, bar);
    return item;
  }

  // Preparing a photo

  // The photo to send: upright and at most MAX_SIDE_PX on its longer side, as JPEG (transparency on white, as
  // the server's own preprocessing does). A small photo in a common format is sent as it is, and so is a file
  // this browser cannot decode: the server then decides, and its answer says why.
  async function photoToSend(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch {
      return file;
    }
    try {
      const longest = Math.max(bitmap.width, bitmap.height);
      if (longest <= MAX_SIDE_PX && file.size <= SEND_AS_IS_BYTES && SEND_AS_IS_TYPES.has(file.type)) return file;
      const scale = Math.min(1, MAX_SIDE_PX / longest);
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(bitmap.width * scale));
      canvas.height = Math.max(1, Math.round(bitmap.height * scale));
      const context = canvas.getContext("2d");
      context.fillStyle = "#ffffff";
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.imageSmoothingQuality = "high";
      context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      const shrunk = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
      return shrunk ?? file;
    } finally {
      bitmap.close();
    }
  }

  function base64Of(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).split(",", 2)[1] ?? "");
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  }

  // Talking to the API

  async function classifyFile(file) {
    if (!file) return;
    const job = ++latestJob;
    showPreview(file);
    setStatus("Preparing the photo\u2026", "busy");
    setDetail("");
    let image;
    try {
      image = await base64Of(await photoToSend(file));
    } catch {
      if (job === latestJob) showError("unreadable_file");
      return;
    }
    if (job === latestJob) await send({ image }, job);
  }

  async function classifyUrl(address) {
    const job = ++latestJob;
    showPreview(null); // a photo from another site is never loaded by this page
    setDetail("");
    if (!address) {
      showError("missing_url");
      return;
    }
    await send({ url: address }, job);
  }

  async function send(source, job) {
    inFlight?.abort("replaced");
    const controller = new AbortController();
    inFlight = controller;
    const timer = setTimeout(() => controller.abort("timeout"), REQUEST_TIMEOUT_MS);
    setStatus("Looking at the photo\u2026", "busy");
    try {
      const response = await fetch(endpoint("predict"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...source, top_k: TOP_K }),
        signal: controller.signal,
      });
      const answer = await response.json().catch(() => null);
      if (job !== latestJob) return;
      if (response.ok && Array.isArray(answer?.predictions) && answer.predictions.length > 0) showAnswer(answer);
      else showError(answer?.error?.code ?? codeForStatus(response.status), answer?.error?.message);
    } catch {
      if (job === latestJob) showError(controller.signal.reason === "timeout" ? "timeout" : "network");
    } finally {
      clearTimeout(timer);
      if (inFlight === controller) inFlight = null;
    }
  }

  // An answer without the API's error body comes from something in front of the service (a gateway or proxy).
  function codeForStatus(status) {
    if (status === 413) return "request_too_large";
    if (status === 429 || status === 502 || status === 503) return "busy";
    if (status === 504) return "deadline_exceeded";
    return status >= 500 ? "internal_error" : "unknown";
  }

  async function showModel() {
    try {
      const response = await fetch(endpoint("breeds"));
      const answer = await response.json();
      if (!response.ok) throw new Error(String(response.status));
      ui.modelInfo.textContent = `Model: ${answer.model.name}, version ${answer.model.version}.`;
      ui.breedCount.textContent = String(answer.breeds.length);
      ui.breedList.replaceChildren(
        ...answer.breeds.map((breed) => {
          const item = document.createElement("li");
          item.textContent = breed;
          return item;
        }),
      );
    } catch {
      ui.modelInfo.textContent = "The model's details could not be loaded; classifying may still work.";
      ui.breedCount.textContent = "unknown";
    }
  }

  // Ways in: choose, drop, paste, or a web address

  ui.file.addEventListener("change", () => classifyFile(ui.file.files?.[0]));

  ui.urlForm.addEventListener("submit", (event) => {
    event.preventDefault();
    classifyUrl(ui.url.value.trim());
  });

  let dragDepth = 0;
  const endDrag = () => {
    dragDepth = 0;
    ui.dropZone.classList.remove("dragging");
  };
  document.addEventListener("dragenter", () => {
    dragDepth += 1;
    ui.dropZone.classList.add("dragging");
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) endDrag();
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault(); // never let the browser navigate to the dropped file
    endDrag();
    const transfer = event.dataTransfer;
    const file = transfer?.files?.[0];
    if (file) {
      classifyFile(file);
      return;
    }
    const dropped = (transfer?.getData("text/uri-list") || transfer?.getData("text/plain") || "")
      .split(/\r?\n/)
      .map((line) => line.trim())
      .find((line) => line && !line.startsWith("#"));
    if (dropped) {
      ui.url.value = dropped;
      classifyUrl(dropped);
    }
  });

  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files ?? [])].find((item) => item.type.startsWith("image/"));
    if (file) {
      event.preventDefault();
      classifyFile(file);
    }
  });

  showModel();
})();
