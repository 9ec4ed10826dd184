// The lmrec web page: plain fetch() over the public JSON API (no framework, no build step).
// Settings come from <body data-*> (the page's Content-Security-Policy forbids inline scripts).
// Ids are kept as the JSON values the API returned (numbers stay numbers), never re-parsed from text;
// titles and every other server string are inserted with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const cfg = document.body.dataset;
  const needsKey = cfg.auth === "key";
  const KEY_STORE = "lmrec.apiKey";
  const keyInput = $("api-key");
  let lastRequestId = null;
  let busy = 0;
  let latest = 0; // only the newest /recommend call may draw the list (answers can overtake)

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function messageOf(data, response) {
    if (data && typeof data.message === "string") return data.message;
    if (data && typeof data.detail === "string") return data.detail;
    if (data && Array.isArray(data.detail)) return data.detail.map((e) => e.msg).join("; ");
    return `${response.status} ${response.statusText}`;
  }

  // One call to the API; write calls carry the key typed into the page (X-API-Key).
  async function api(method, path, body, write = false) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (write && keyInput.value) headers["X-API-Key"] = keyInput.value;
    const init = { method, headers };
    if (body !== undefined) init.body = JSON.stringify(body);
    busy += 1;
    document.body.classList.add("busy");
    try {
      const response = await fetch(path, init);
      let data = null;
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
      if (!response.ok) throw new ApiError(response.status, messageOf(data, response));
      return data;
    } finally {
      busy -= 1;
      if (busy === 0) document.body.classList.remove("busy");
    }
  }

  function explain(err) {
    if (err.status === 401 && needsKey) {
      return keyInput.value
        ? "The API key is wrong: likes, dislikes and new items need the server's key."
        : "Type the API key (top right) to like, dislike or add items.";
    }
    return err.message || String(err);
  }

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function setStatus(id, text, isError = false) {
    const s = $(id);
    s.textContent = text;
    s.classList.toggle("error", isError);
  }

  const label = (item) => item.title || `item ${item.item_id}`;

  // the item's picture (GET /items/{id}/image), when the catalogue or POST /items gave it one
  function poster(item, className) {
    if (!item.image_url) return null;
    const img = el("img", className);
    img.src = item.image_url;
    img.alt = label(item);
    img.loading = "lazy";
    return img;
  }
  const currentUser = () => $("user").value || null;
  const searchText = () => $("search").value.trim();

  // ------------------------------------------------------------------ recommendations
  function becauseLine(because) {
    if (!because) return null;
    const parts = [];
    if (because.items && because.items.length) {
      const names = because.items.map((b) => `${b.title || `item ${b.item_id}`} (${b.similarity.toFixed(2)})`);
      parts.push(`because you liked ${names.join(", ")}`);
    }
    if (because.keywords && because.keywords.length) parts.push(`matches: ${because.keywords.join(", ")}`);
    return parts.length ? parts.join(" · ") : null;
  }

  function renderRecs(res) {
    const list = $("recs");
    list.replaceChildren();
    for (const item of res.items) {
      const li = el("li", "rec");
      li.dataset.itemId = String(item.item_id);
      const pic = poster(item, "poster");
      if (pic) {
        li.classList.add("has-poster");
        li.append(pic);
      }
      const head = el("div", "head");
      const title = el("button", "title", label(item));
      title.type = "button";
      title.title = "Show similar items";
      title.addEventListener("click", () => showSimilar(item));
      head.append(title, el("span", "id", `#${item.item_id}`), el("span", "score", `score ${item.score.toFixed(3)}`));
      li.append(head);
      const why = becauseLine(item.because);
      if (why) li.append(el("div", "because", why));
      const actions = el("div", "actions");
      const like = el("button", "like", "Like");
      like.type = "button";
      like.addEventListener("click", () => sendFeedback(item, "like"));
      const dislike = el("button", "dislike secondary", "Dislike");
      dislike.type = "button";
      dislike.addEventListener("click", () => sendFeedback(item, "dislike"));
      actions.append(like, dislike);
      li.append(actions);
      list.append(li);
    }
  }

  function describe(res, user, text) {
    let s = `${res.items.length} items`;
    if (user !== null) s += ` for user ${user}`;
    if (text) s += ` matching “${text}”`;
    s += ` (${res.model}, ordered by ${res.policy}).`;
    if (res.fallback) s += " Nothing is known about this user yet: these are the most popular items.";
    for (const w of res.warnings || []) s += ` ${w.message}`;
    return s;
  }

  async function refresh(note = "") {
    const user = currentUser();
    const text = searchText();
    if (user === null && !text) {
      setStatus("status", "Pick a user or type a search.");
      return;
    }
    const body = { k: 10, explain: true };
    if (user !== null) body.user_id = user;
    if (text) body.text = text;
    const mine = ++latest;
    try {
      const res = await api("POST", "/recommend", body);
      if (mine !== latest) return;
      lastRequestId = res.request_id;
      renderRecs(res);
      $("recs").dataset.requestId = res.request_id; // a new list (tests wait for it to change)
      setStatus("status", (note ? `${note} ` : "") + describe(res, user, text));
    } catch (err) {
      if (mine !== latest) return;
      $("recs").replaceChildren();
      setStatus("status", explain(err), true);
    }
  }

  // ------------------------------------------------------------------ feedback
  function remember(item, event) {
    const li = el("li", event, `${event === "like" ? "liked" : "disliked"} ${label(item)} (user ${currentUser()})`);
    $("liked").prepend(li);
  }

  async function sendFeedback(item, event) {
    const user = currentUser();
    if (user === null) {
      setStatus("status", "Pick a user first: feedback belongs to a user.", true);
      return;
    }
    const body = { user_id: user, item_id: item.item_id, event };
    if (lastRequestId) body.request_id = lastRequestId;
    try {
      await api("POST", "/feedback", body, true);
    } catch (err) {
      setStatus("status", explain(err), true);
      return;
    }
    remember(item, event);
    const note =
      event === "like"
        ? `Liked “${label(item)}”: it is in the history now, so it left the list.`
        : `Disliked “${label(item)}”: it is hidden from this user.`;
    await refresh(note);
  }

  // ------------------------------------------------------------------ similar items
  async function showSimilar(item) {
    $("similar-hint").hidden = true;
    $("similar-of").textContent = `Like ${label(item)}`;
    const list = $("similar");
    try {
      const res = await api("GET", `/items/${encodeURIComponent(String(item.item_id))}/similar?k=8`);
      list.replaceChildren();
      for (const s of res.items) {
        const li = el("li", "sim");
        const title = el("button", "title", label(s));
        title.type = "button";
        title.addEventListener("click", () => showSimilar(s));
        const pic = poster(s, "thumb");
        if (pic) li.append(pic);
        li.append(title, el("span", "score", s.score.toFixed(3)));
        list.append(li);
      }
    } catch (err) {
      list.replaceChildren(el("li", "error", explain(err)));
    }
  }

  // ------------------------------------------------------------------ add an item
  function base64Of(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
      reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
      reader.readAsDataURL(file);
    });
  }

  function nextId(id) {
    return /^-?\d+$/.test(id) ? String(BigInt(id) + 1n) : `${id}-2`;
  }

  async function addItem(event) {
    event.preventDefault();
    const idInput = $("new-id");
    const title = $("new-title").value.trim();
    const text = $("new-text").value.trim();
    const file = $("new-image").files[0];
    const body = { item_id: idInput.value.trim() };
    if (title) body.title = title;
    if (text) body.text = text;
    try {
      if (file) body.image = await base64Of(file);
      if (!title && !text && !file) throw new Error("Give the new item a title, a text or a picture.");
      const res = await api("POST", "/items", body, true);
      idInput.value = nextId(String(res.item_id));
      $("new-title").value = "";
      $("new-text").value = "";
      $("new-image").value = "";
      await Promise.all([showSimilar({ item_id: res.item_id, title }), refresh()]);
      setStatus("add-status", `Added ${title ? `“${title}”` : "the new item"} as item ${res.item_id}: it is recommendable now.`);
    } catch (err) {
      if (err.status === 409 && /already exists/.test(err.message)) idInput.value = nextId(idInput.value.trim());
      setStatus("add-status", explain(err), true);
    }
  }

  // ------------------------------------------------------------------ wiring
  if (needsKey) {
    keyInput.value = sessionStorage.getItem(KEY_STORE) || "";
    keyInput.addEventListener("input", () => sessionStorage.setItem(KEY_STORE, keyInput.value));
  } else {
    $("key-box").hidden = true;
  }
  if (cfg.text !== "1") {
    $("search").disabled = true;
    $("search").placeholder = "this model does not read text";
  }
  if (cfg.add !== "1") {
    for (const e of $("add-form").elements) e.disabled = true;
    setStatus("add-status", "This model cannot add items while serving (serve a text model, e.g. content).");
  }
  $("query").addEventListener("submit", (e) => {
    e.preventDefault();
    refresh();
  });
  $("user").addEventListener("change", () => refresh());
  $("clear").addEventListener("click", () => {
    $("search").value = "";
    refresh();
  });
  $("add-form").addEventListener("submit", addItem);
  $("key-box").addEventListener("submit", (e) => e.preventDefault());
  refresh();
})();
