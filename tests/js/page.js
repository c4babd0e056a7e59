// Test page: an A1111 v1.10.1-like document in jsdom with fake_a1111.js, a fake clock, a fake
// /internal/progress server and our javascript/lora_trainer.js loaded the way the WebUI does.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { JSDOM, VirtualConsole } = require('jsdom');

const ROOT = path.resolve(__dirname, '..', '..');
const FAKE_A1111 = fs.readFileSync(path.join(__dirname, 'fake_a1111.js'), 'utf8');
const OUR_SCRIPT = fs.readFileSync(path.join(ROOT, 'javascript', 'lora_trainer.js'), 'utf8');

// Markup as gradio 3.41.2 renders it (copied from the DOM of the real tab in Chromium): a
// gr.HTML's elem_id is on its block and on its inner .prose div; a Button's on the <button>;
// a Textbox's on the block, with label > textarea inside; inactive tabs have display: none.
function block(id, inner, hidden) {
    return `<div id="${id}" class="block padded${hidden ? ' hidden' : ''}">${inner}</div>`;
}

function textbox(id, value, hidden) {
    return block(id, `<label class="container"><span data-testid="block-info">${id}</span>` +
        `<textarea data-testid="textbox" rows="1">${value || ''}</textarea></label>`, hidden);
}

function html(id, inner) {
    return block(id, `<div><div class="prose" id="${id}">${inner}</div></div>`);
}

function button(id, label, { disabled = false, hidden = false } = {}) {
    return `<button class="lg secondary${hidden ? ' hidden' : ''}" id="${id}"` +
        `${disabled ? ' disabled=""' : ''}>${label}</button>`;
}

const TXT2IMG = `<div id="tab_txt2img" class="tabitem" style="display: none;">
    ${textbox('txt2img_prompt', '')}
    <button class="lg primary" id="txt2img_generate">Generate</button>
</div>`;

const TRAIN_TAB = `<div id="tab_lora_trainer" class="tabitem" style="display: block;">
  <div id="lora_trainer_run" class="gap">
    <div class="stretch">
      ${button('lora_trainer_train', 'Train')}
      ${button('lora_trainer_stop_save', 'Stop and save', { disabled: true })}
      ${button('lora_trainer_stop', 'Stop', { disabled: true })}
    </div>
    ${html('lora_trainer_status', '<div class="lora-trainer-status">Ready.</div>')}
    ${html('lora_trainer_progress', '')}
    <div id="lora_trainer_gallery" class="block"><div class="empty"></div></div>
    ${textbox('lora_trainer_prompt', '')}
    ${button('lora_trainer_send', 'Send to txt2img')}
    ${textbox('lora_trainer_task_id', '', true)}
    ${textbox('lora_trainer_token', '', true)}
    ${button('lora_trainer_refresh', 'Run', { hidden: true })}
  </div>
</div>`;

function pageHtml({ withTab = true, withTxt2img = true } = {}) {
    const tabs = [withTxt2img && ['txt2img', TXT2IMG], withTab && ['Train LoRA', TRAIN_TAB]]
        .filter(Boolean);
    const nav = tabs.map(([label], i) =>
        `<button class="${i === tabs.length - 1 ? 'selected' : ''}">${label} </button>`).join('');
    return `<!DOCTYPE html><html><head><style>.hidden { display: none !important; }</style></head>
<body><gradio-app><div class="gradio-container"><div id="tabs" class="tabs">
<div class="tab-nav scroll-hide">${nav}</div>${tabs.map(([, body]) => body).join('\n')}
</div></div></gradio-app></body></html>`;
}

/** A clock that only moves when told: setTimeout/setInterval/Date.now of the page. */
class FakeClock {
    constructor() {
        this.now = 1700000000000;
        this.timers = new Map();
        this.nextId = 1;
    }

    install(window) {
        window.setTimeout = (fn, ms = 0) => this.add(fn, ms, false);
        window.setInterval = (fn, ms = 0) => this.add(fn, ms, true);
        window.clearTimeout = window.clearInterval = (id) => this.timers.delete(id);
        const clock = this;
        const RealDate = window.Date;
        class PageDate extends RealDate {
            constructor(...args) {
                super(...(args.length ? args : [clock.now]));
            }

            static now() {
                return clock.now;
            }
        }
        window.Date = PageDate;
    }

    add(fn, ms, repeat) {
        const id = this.nextId++;
        this.timers.set(id, { fn, at: this.now + Math.max(0, ms), every: repeat ? ms : null });
        return id;
    }

    /** Run every timer due within `ms` milliseconds, in time order. */
    tick(ms = 0) {
        const end = this.now + ms;
        for (;;) {
            let next = null;
            for (const [id, t] of this.timers) {
                if (t.at <= end && (!next || t.at < next[1].at)) {
                    next = [id, t];
                }
            }
            if (!next) {
                break;
            }
            const [id, t] = next;
            this.now = Math.max(this.now, t.at);
            if (t.every === null) {
                this.timers.delete(id);
            } else {
                t.at = this.now + Math.max(1, t.every);
            }
            t.fn();
        }
        this.now = end;
    }
}

/** /internal/progress as modules/progress.py answers it (progressapi), driven by the test. */
class FakeProgressServer {
    constructor() {
        this.requests = [];
        this.current = null; // the task running under the GPU queue
        this.pending = []; // queued task ids
        this.finished = []; // finished task ids
        this.progress = 0;
        this.textinfo = '';
        this.idLivePreview = -1;
        this.livePreview = null;
    }

    handle(url, data) {
        this.requests.push({ url, data });
        if (url !== './internal/progress') {
            return null; // 404: the real request() calls errorHandler
        }
        const active = data.id_task === this.current;
        const queued = this.pending.includes(data.id_task);
        const completed = this.finished.includes(data.id_task);
        if (!active) {
            const textinfo = queued ? `In queue: ${this.pending.indexOf(data.id_task) + 1}/${this.pending.length}` : 'Waiting...';
            return { active, queued, completed, id_live_preview: -1, textinfo };
        }
        const reply = { active, queued, completed, progress: this.progress, eta: null, live_preview: null,
            id_live_preview: data.id_live_preview, textinfo: this.textinfo };
        if (data.live_preview !== false && this.livePreview && this.idLivePreview !== data.id_live_preview) {
            reply.live_preview = this.livePreview;
            reply.id_live_preview = this.idLivePreview;
        }
        return reply;
    }

    /** Task ids polled for progress (not the live-preview polls). */
    progressIds() {
        return this.requests.filter((r) => r.data.live_preview === false).map((r) => r.data.id_task);
    }

    /** What wrap_gradio_gpu_call does: queue, start, finish a task. */
    start(id) {
        this.pending = this.pending.filter((x) => x !== id);
        this.current = id;
    }

    finish(id) {
        if (this.current === id) {
            this.current = null;
        }
        this.finished.push(id);
    }
}

/**
 * A loaded page: `window`, `clock`, `server`, `errors` (console.error output and uncaught
 * exceptions), `$(id)`, `clicks` (how often each button id was clicked).
 */
function loadPage(options = {}) {
    const errors = [];
    const virtualConsole = new VirtualConsole();
    virtualConsole.on('error', (...args) => errors.push(args.map(String).join(' ')));
    virtualConsole.on('jsdomError', (e) => errors.push(String(e && e.stack || e)));
    const dom = new JSDOM(pageHtml(options), {
        runScripts: 'outside-only', url: 'http://127.0.0.1:7860/', virtualConsole,
    });
    const { window } = dom;
    const clock = new FakeClock();
    clock.install(window);
    const server = new FakeProgressServer();
    window.fakeServer = server;
    for (const [key, value] of Object.entries(options.localStorage || {})) {
        window.localStorage.setItem(key, value);
    }
    const clicks = {};
    window.document.addEventListener('click', (e) => {
        const id = e.target.id || e.target.textContent.trim();
        clicks[id] = (clicks[id] || 0) + 1;
    }, true);
    fakeGradioTabs(window);
    window.eval(FAKE_A1111);
    window.eval(OUR_SCRIPT);
    window.eval('fakeUiLoaded()');
    const $ = (id) => window.document.getElementById(id);
    return { window, clock, server, errors, clicks, $ };
}

/** gradio's Tabs: a click on a nav button selects it and shows only its tab item. */
function fakeGradioTabs(window) {
    const tabs = window.document.getElementById('tabs');
    const buttons = Array.from(tabs.querySelectorAll('.tab-nav > button'));
    const items = Array.from(tabs.querySelectorAll(':scope > .tabitem'));
    buttons.forEach((b, i) => b.addEventListener('click', () => {
        buttons.forEach((x) => x.classList.toggle('selected', x === b));
        items.forEach((item, j) => { item.style.display = i === j ? 'block' : 'none'; });
    }));
}

module.exports = { loadPage };
