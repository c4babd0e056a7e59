// Train LoRA tab (elements "lora_trainer_*"). The WebUI loads every file in an extension's
// javascript/ folder after its own scripts, so these are there (A1111 v1.10.1; Forge has the
// same): gradioApp(), onUiLoaded(), uiElementIsVisible() from script.js; randomId(),
// requestProgress() from javascript/progressbar.js; updateInput(), switch_to_txt2img() from
// javascript/ui.js; localGet(), localSet(), localRemove() from javascript/localStorage.js.
// Tests: tests/js/ (node --test, against a fake of that page).

var loraTrainerTracking = false; // a requestProgress loop of ours is running
var loraTrainerLastRefresh = 0;
var LORA_TRAINER_TASK_KEY = 'lora_trainer_task_id'; // survives a page reload, like txt2img's

function loraTrainerElement(id) {
    return gradioApp().getElementById(id);
}

/** Train disabled and the Stop buttons enabled while a run is active (and the reverse). */
function loraTrainerSetRunning(running) {
    var train = loraTrainerElement('lora_trainer_train');
    if (train) {
        train.disabled = running;
    }
    ['lora_trainer_stop', 'lora_trainer_stop_save'].forEach(function(id) {
        var button = loraTrainerElement(id);
        if (button) {
            button.disabled = !running;
        }
    });
}

/** Ask the Python side for the loss chart, samples and log (at most every two seconds). */
function loraTrainerRefresh(force) {
    var now = Date.now();
    if (!force && now - loraTrainerLastRefresh < 2000) {
        return;
    }
    loraTrainerLastRefresh = now;
    var button = loraTrainerElement('lora_trainer_refresh');
    if (button) {
        button.click();
    }
}

/** Show task `taskId` with the WebUI's own progress bar and live preview until it ends. */
function loraTrainerFollow(taskId, inactivityTimeout) {
    var container = loraTrainerElement('lora_trainer_progress');
    if (!container || typeof requestProgress !== 'function') {
        return false; // the tab is not on this page
    }
    loraTrainerTracking = true;
    loraTrainerSetRunning(true);
    localSet(LORA_TRAINER_TASK_KEY, taskId);
    var atEnd = function() {
        loraTrainerTracking = false;
        localRemove(LORA_TRAINER_TASK_KEY);
        loraTrainerSetRunning(false);
        loraTrainerRefresh(true);
    };
    var onProgress = function() {
        loraTrainerRefresh(false);
    };
    requestProgress(taskId, container, loraTrainerElement('lora_trainer_gallery'), atEnd, onProgress,
        inactivityTimeout);
    return true;
}

/**
 * _js of the Train event, after the checks ran: with a token (the checks passed), a new task id
 * for wrap_gradio_gpu_call, followed by the WebUI's progress polling.
 */
function loraTrainerStart(taskId, token) {
    if (!token) {
        return [taskId, token];
    }
    var id = randomId();
    loraTrainerFollow(id);
    return [id, token];
}

function loraTrainerEscape(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * `prompt` with `text` ("<lora:name:w> trigger, words") added: a tag of the same LoRA is
 * replaced in place, and trigger words the prompt already has are not added again.
 */
function loraTrainerPromptWith(prompt, text) {
    var tag = (text.match(/<lora:[^:>]+(:[^>]*)?>/) || [''])[0];
    var result = prompt.trim();
    var replaced = false;
    if (tag) {
        var name = tag.slice(6).split(/[:>]/)[0];
        var sameLora = new RegExp('([\\s,]*)<lora:' + loraTrainerEscape(name) + '(:[^>]*)?>', 'g');
        result = result.replace(sameLora, function(found, before) {
            var first = !replaced;
            replaced = true;
            return first ? before + tag : ''; // one tag per LoRA
        });
    }
    var words = result.replace(/<[^>]*>/g, ' '); // a LoRA's name is no trigger word
    var missing = text.replace(tag, '').split(',').map(function(word) {
        return word.trim();
    }).filter(function(word) {
        var present = new RegExp('(^|[^\\w])' + loraTrainerEscape(word) + '(?!\\w)', 'i');
        return word && !present.test(words);
    });
    var added = [];
    if (tag && !replaced) {
        added.push(tag);
    }
    if (missing.length) {
        added.push(missing.join(', '));
    }
    if (!added.length) {
        return result;
    }
    result = result.replace(/[\s,]+$/, '');
    return result ? result + ', ' + added.join(' ') : added.join(' ');
}

/** "Send to txt2img": the <lora:name:w> tag and trigger words into the txt2img prompt. */
function loraTrainerSendToTxt2img(text) {
    var prompt = gradioApp().querySelector('#txt2img_prompt textarea');
    if (!text || !prompt) {
        return [];
    }
    prompt.value = loraTrainerPromptWith(prompt.value, text);
    updateInput(prompt); // gradio only sees the new value after an input event
    switch_to_txt2img();
    return [];
}

onUiLoaded(function() {
    loraTrainerRefresh(true); // a page opened during a run shows it
    var taskId = localGet(LORA_TRAINER_TASK_KEY);
    if (taskId) {
        loraTrainerFollow(taskId, 0); // reloaded during a run: the bar comes back (ends at once if over)
    }
    // runs started through the HTTP API are followed by refreshing while Train is disabled
    setInterval(function() {
        var train = loraTrainerElement('lora_trainer_train');
        if (train && train.disabled && !loraTrainerTracking && uiElementIsVisible(train)) {
            loraTrainerRefresh(true);
        }
    }, 3000);
});
