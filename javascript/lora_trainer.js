// Train LoRA tab (elements "lora_trainer_*"). The WebUI loads every file in an extension's
// javascript/ folder; gradioApp(), onUiLoaded(), randomId(), requestProgress(), updateInput()
// and switch_to_txt2img() come from the WebUI's own scripts (A1111 v1.10.1, also in Forge).

var loraTrainerTracking = false; // a requestProgress loop of ours is running
var loraTrainerLastRefresh = 0;

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

/**
 * _js of the Train event, after the checks ran: with a token (the checks passed), start the
 * WebUI's own progress polling for a new task id, which wrap_gradio_gpu_call reports on.
 */
function loraTrainerStart(taskId, token) {
    if (!token) {
        return [taskId, token];
    }
    var id = randomId();
    loraTrainerSetRunning(true);
    loraTrainerTracking = true;
    requestProgress(
        id,
        loraTrainerElement('lora_trainer_progress'),
        loraTrainerElement('lora_trainer_gallery'),
        function() {
            loraTrainerTracking = false;
            loraTrainerSetRunning(false);
            loraTrainerRefresh(true);
        },
        function() {
            loraTrainerRefresh(false);
        }
    );
    return [id, token];
}

/** "Send to txt2img": the <lora:name:w> tag and trigger words into the txt2img prompt. */
function loraTrainerSendToTxt2img(text) {
    if (!text) {
        return [];
    }
    var prompt = gradioApp().querySelector('#txt2img_prompt textarea');
    if (prompt) {
        var current = prompt.value.trim();
        if (current.indexOf(text) === -1) {
            prompt.value = current ? current + ', ' + text : text;
            updateInput(prompt);
        }
        switch_to_txt2img();
    }
    return [];
}

onUiLoaded(function() {
    loraTrainerRefresh(true); // a page opened during a run shows it
    // runs started through the HTTP API (or before a page reload) are followed by polling
    setInterval(function() {
        var train = loraTrainerElement('lora_trainer_train');
        var visible = train && train.offsetParent !== null;
        if (visible && train.disabled && !loraTrainerTracking) {
            loraTrainerRefresh(true);
        }
    }, 3000);
});
