// Fake of the page globals of A1111 v1.10.1 that javascript/lora_trainer.js uses. It runs inside
// the page (jsdom) before our script, as the WebUI loads its own scripts before extensions'
// (modules/ui_gradio_extensions.py, javascript_html). Same names, arguments and behaviour as
// the real ones; the transport of /internal/progress is `window.fakeServer` instead of XHR.
/* global fakeServer */

// --- script.js ---------------------------------------------------------------------------
// gradioApp(): the <gradio-app> element (its shadowRoot when there is one), with a
// getElementById that searches the document.
function gradioApp() {
    var apps = document.getElementsByTagName('gradio-app');
    var app = apps.length === 0 ? document : apps[0];
    if (app !== document) {
        app.getElementById = function(id) {
            return document.getElementById(id);
        };
    }
    return app.shadowRoot ? app.shadowRoot : app;
}

var uiLoadedCallbacks = [];
var uiUpdateCallbacks = [];
var uiAfterUpdateCallbacks = [];

function onUiLoaded(callback) {
    uiLoadedCallbacks.push(callback);
}

function onUiUpdate(callback) {
    uiUpdateCallbacks.push(callback);
}

function onAfterUiUpdate(callback) {
    uiAfterUpdateCallbacks.push(callback);
}

// The real one logs a throwing callback with console.error and goes on with the next.
function executeCallbacks(queue, arg) {
    queue.forEach(function(callback) {
        try {
            callback(arg);
        } catch (e) {
            console.error('error running callback', callback, ':', e);
        }
    });
}

// The real script.js runs the onUiLoaded callbacks from a MutationObserver, once
// #txt2img_prompt exists; the harness calls this at that point.
var executedOnLoaded = false;
function fakeUiLoaded() {
    if (!executedOnLoaded && gradioApp().querySelector('#txt2img_prompt')) {
        executedOnLoaded = true;
        executeCallbacks(uiLoadedCallbacks);
    }
    executeCallbacks(uiUpdateCallbacks, []);
    executeCallbacks(uiAfterUpdateCallbacks);
}

// True unless the element or an ancestor has display: none (an inactive tab).
function uiElementIsVisible(el) {
    if (el === document) {
        return true;
    }
    if (getComputedStyle(el).display === 'none') {
        return false;
    }
    return uiElementIsVisible(el.parentNode);
}

// --- javascript/localStorage.js -----------------------------------------------------------
function localSet(k, v) {
    try {
        localStorage.setItem(k, v);
    } catch (e) {
        console.warn('Failed to save ' + k + ' to localStorage: ' + e);
    }
}

function localGet(k, def) {
    try {
        return localStorage.getItem(k);
    } catch (e) {
        console.warn('Failed to load ' + k + ' from localStorage: ' + e);
    }
    return def;
}

function localRemove(k) {
    try {
        return localStorage.removeItem(k);
    } catch (e) {
        console.warn('Failed to remove ' + k + ' from localStorage: ' + e);
    }
}

// --- javascript/ui.js ---------------------------------------------------------------------
var opts = {show_progressbar: true, live_preview_refresh_period: 500};

// An `input` event whose target is the textarea, so gradio reads the new value.
function updateInput(target) {
    var e = new Event('input', {bubbles: true});
    Object.defineProperty(e, 'target', {value: target});
    target.dispatchEvent(e);
}

// Clicks the first button inside #tabs (the txt2img tab's) and returns its arguments.
function switch_to_txt2img() {
    gradioApp().querySelector('#tabs').querySelectorAll('button')[0].click();
    return Array.from(arguments);
}

// --- javascript/progressbar.js ------------------------------------------------------------
// request(): POST JSON, handler(parsed reply) on 200, errorHandler() otherwise (async).
function request(url, data, handler, errorHandler) {
    setTimeout(function() {
        var reply = fakeServer.handle(url, JSON.parse(JSON.stringify(data)));
        if (reply === null) {
            errorHandler();
        } else {
            handler(reply);
        }
    }, 0);
}

function randomId() {
    var part = function() {
        return Math.random().toString(36).slice(2, 7);
    };
    return 'task(' + part() + part() + part() + ')';
}

// Polls ./internal/progress for id_task with a .progressDiv inserted before
// progressbarContainer (in its parent) and a .livePreview in `gallery`; both are removed and
// atEnd() called when the task completes, stops being active, fails to answer, or was never
// queued nor active after inactivityTimeout seconds. onProgress(reply) on every other reply.
function requestProgress(id_task, progressbarContainer, gallery, atEnd, onProgress, inactivityTimeout = 40) {
    var dateStart = new Date();
    var wasEverActive = false;
    var parentProgressbar = progressbarContainer.parentNode;
    var divProgress = document.createElement('div');
    divProgress.className = 'progressDiv';
    divProgress.style.display = opts.show_progressbar ? 'block' : 'none';
    var divInner = document.createElement('div');
    divInner.className = 'progress';
    divProgress.appendChild(divInner);
    parentProgressbar.insertBefore(divProgress, progressbarContainer);
    var livePreview = null;

    var removeProgressBar = function() {
        if (!divProgress) {
            return;
        }
        parentProgressbar.removeChild(divProgress);
        if (gallery && livePreview) {
            gallery.removeChild(livePreview);
        }
        atEnd();
        divProgress = null;
    };

    var funProgress = function(id) {
        request('./internal/progress', {id_task: id, live_preview: false}, function(res) {
            if (res.completed) {
                removeProgressBar();
                return;
            }
            divInner.style.width = ((res.progress || 0) * 100.0) + '%';
            var text = res.progress > 0 ? ((res.progress || 0) * 100.0).toFixed(0) + '%' : '';
            if (res.textinfo && res.textinfo.indexOf('\n') === -1) {
                text = res.textinfo + ' ' + text;
            }
            divInner.textContent = text;
            var elapsed = (new Date() - dateStart) / 1000;
            if (res.active) {
                wasEverActive = true;
            }
            if (!res.active && wasEverActive) {
                removeProgressBar();
                return;
            }
            if (elapsed > inactivityTimeout && !res.queued && !res.active) {
                removeProgressBar();
                return;
            }
            if (onProgress) {
                onProgress(res);
            }
            setTimeout(function() {
                funProgress(id);
            }, opts.live_preview_refresh_period || 500);
        }, removeProgressBar);
    };

    var funLivePreview = function(id, idLivePreview) {
        request('./internal/progress', {id_task: id, id_live_preview: idLivePreview}, function(res) {
            if (!divProgress) {
                return;
            }
            if (res.live_preview && gallery) {
                if (!livePreview) {
                    livePreview = document.createElement('div');
                    livePreview.className = 'livePreview';
                    gallery.insertBefore(livePreview, gallery.firstElementChild);
                }
                var img = document.createElement('img');
                img.src = res.live_preview;
                livePreview.appendChild(img);
                if (livePreview.childElementCount > 2) {
                    livePreview.removeChild(livePreview.firstElementChild);
                }
            }
            setTimeout(function() {
                funLivePreview(id, res.id_live_preview);
            }, opts.live_preview_refresh_period || 500);
        }, removeProgressBar);
    };

    funProgress(id_task);
    if (gallery) {
        funLivePreview(id_task, 0);
    }
}
