// LoRA trainer tab (elem_id "tab_lora_trainer", components "lora_trainer_*").
// The WebUI loads every file in an extension's javascript/ folder into the page; gradioApp()
// and onUiLoaded() come from the WebUI's script.js (A1111 v1.10.1, also in Forge).

/**
 * The text field of a Gradio Textbox, given the Textbox's elem_id (Gradio 3 puts the id on
 * the block around the <textarea>/<input>, not on the field itself).
 */
function loraTrainerFindField(id) {
    const app = gradioApp();
    const block = app.querySelector('#' + CSS.escape(id));
    if (!block) {
        return null;
    }
    if (block.matches('textarea, input')) {
        return block;
    }
    return block.querySelector('textarea, input');
}

/**
 * Copy with a hidden <textarea> and execCommand: the only way when navigator.clipboard is
 * missing, which browsers do on plain-http pages other than localhost (e.g. --listen on a LAN).
 */
function loraTrainerCopyFallback(text) {
    const area = document.createElement('textarea');
    area.value = text;
    area.setAttribute('readonly', '');
    area.style.position = 'fixed';
    area.style.opacity = '0';
    document.body.appendChild(area);
    area.select();
    let copied = false;
    try {
        copied = document.execCommand('copy');
    } catch (e) {
        copied = false;
    }
    document.body.removeChild(area);
    return copied;
}

/** Briefly mark the Textbox's block so the user sees that the copy worked (or did not). */
function loraTrainerFlash(id, copied) {
    const block = gradioApp().querySelector('#' + CSS.escape(id));
    if (!block) {
        return;
    }
    const cls = copied ? 'lora-trainer-copied' : 'lora-trainer-copy-failed';
    block.classList.add(cls);
    setTimeout(function() {
        block.classList.remove(cls);
    }, 1500);
}

/**
 * Copy the command line shown in the Textbox `id` to the clipboard. Resolves to true when it
 * was copied. Usable from Gradio: button.click(None, _js="() => loraTrainerCopyCommand('lora_trainer_command')").
 */
function loraTrainerCopyCommand(id) {
    const field = loraTrainerFindField(id);
    if (!field) {
        console.warn('LoRA trainer: no text field with id ' + id + ' to copy from');
        return Promise.resolve(false);
    }
    const text = field.value;
    const done = function(copied) {
        loraTrainerFlash(id, copied);
        return copied;
    };
    if (navigator.clipboard && window.isSecureContext) {
        return navigator.clipboard.writeText(text).then(
            function() {
                return done(true);
            },
            function() {
                return done(loraTrainerCopyFallback(text));
            }
        );
    }
    return Promise.resolve(done(loraTrainerCopyFallback(text)));
}

// Any element with data-lora-trainer-copy="<textbox elem_id>" (e.g. inside a gr.HTML) becomes a
// copy button; one delegated listener also covers elements Gradio re-renders later.
onUiLoaded(function() {
    gradioApp().addEventListener('click', function(event) {
        const trigger = event.target.closest && event.target.closest('[data-lora-trainer-copy]');
        if (trigger) {
            event.preventDefault();
            loraTrainerCopyCommand(trigger.getAttribute('data-lora-trainer-copy'));
        }
    });
});
