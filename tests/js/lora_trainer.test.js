// javascript/lora_trainer.js in a fake A1111 v1.10.1 page (tests/js/page.js). Run: node --test tests/js
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { loadPage } = require('./page');

function buttonsState(page) {
    return ['lora_trainer_train', 'lora_trainer_stop', 'lora_trainer_stop_save']
        .map((id) => (page.$(id).disabled ? 'off' : 'on')).join(' ');
}

/** What gradio does for the Train event's second step: call the _js function with its inputs. */
function startRun(page) {
    return page.window.loraTrainerStart('', 'token123');
}

test('Train: buttons off while the run is active, back on after it', () => {
    const page = loadPage();
    page.clock.tick(0);
    assert.equal(buttonsState(page), 'on off off');
    const [id, token] = startRun(page);
    assert.equal(token, 'token123');
    assert.equal(buttonsState(page), 'off on on');
    page.server.start(id);
    page.server.progress = 0.25;
    page.clock.tick(5000);
    assert.equal(buttonsState(page), 'off on on');
    page.server.finish(id);
    page.clock.tick(1000);
    assert.equal(buttonsState(page), 'on off off');
    assert.deepEqual(page.errors, []);
});

test('Train: failed checks (no token) start nothing', () => {
    const page = loadPage();
    const result = page.window.loraTrainerStart('', '');
    assert.deepEqual(Array.from(result), ['', '']);
    page.clock.tick(5000);
    assert.equal(buttonsState(page), 'on off off');
    assert.deepEqual(page.server.requests, []);
    assert.equal(page.window.document.querySelector('.progressDiv'), null);
});

test('progress polls /internal/progress with the task id handed to Python', () => {
    const page = loadPage();
    const [id] = startRun(page);
    assert.match(id, /^task\([a-z0-9]+\)$/); // what wrap_gradio_gpu_call recognises
    const bar = page.window.document.querySelector('.progressDiv');
    const container = page.$('lora_trainer_progress');
    assert.equal(bar.nextElementSibling, container); // the WebUI's bar, before our container
    page.server.pending.push(id); // queued behind a txt2img job
    page.clock.tick(2000);
    page.server.start(id);
    page.server.progress = 0.5;
    page.server.textinfo = 'Training LoRA: step 5/10';
    page.server.livePreview = 'data:image/png;base64,AAAA';
    page.server.idLivePreview = 3;
    page.clock.tick(1000);
    assert.match(bar.textContent, /step 5\/10 50%/);
    assert.ok(page.$('lora_trainer_gallery').querySelector('.livePreview img'));
    const urls = new Set(page.server.requests.map((r) => r.url));
    assert.deepEqual([...urls], ['./internal/progress']);
    const ids = new Set(page.server.requests.map((r) => r.data.id_task));
    assert.deepEqual([...ids], [id]);
    page.server.finish(id);
    page.clock.tick(1000);
    assert.equal(page.window.document.querySelector('.progressDiv'), null);
    assert.equal(page.$('lora_trainer_gallery').querySelector('.livePreview'), null);
    const polls = page.server.requests.length;
    page.clock.tick(10000);
    assert.equal(page.server.requests.length, polls); // polling stopped
});

test('the tab refreshes its chart while the run goes on, at most every two seconds', () => {
    const page = loadPage();
    page.clock.tick(0);
    const before = page.clicks.lora_trainer_refresh || 0;
    const [id] = startRun(page);
    page.server.start(id);
    page.clock.tick(10000); // 20 progress replies
    const during = (page.clicks.lora_trainer_refresh || 0) - before;
    assert.ok(during >= 4 && during <= 6, `refreshed ${during} times in 10 s`);
    page.server.finish(id);
    page.clock.tick(600);
    assert.equal(page.clicks.lora_trainer_refresh - before, during + 1); // once more at the end
});

test('a reload during a run follows the same task again; a finished one ends at once', () => {
    const running = loadPage({ localStorage: { lora_trainer_task_id: 'task(abc)' } });
    running.server.start('task(abc)');
    running.clock.tick(1000);
    assert.ok(running.window.document.querySelector('.progressDiv'));
    assert.equal(buttonsState(running), 'off on on');
    assert.deepEqual([...new Set(running.server.progressIds())], ['task(abc)']);

    const over = loadPage({ localStorage: { lora_trainer_task_id: 'task(old)' } });
    over.clock.tick(1000);
    assert.equal(over.window.document.querySelector('.progressDiv'), null);
    assert.equal(buttonsState(over), 'on off off');
    assert.equal(over.window.localStorage.getItem('lora_trainer_task_id'), null);
});

test('a run started elsewhere (HTTP API) is refreshed while Train is off and the tab shown', () => {
    const page = loadPage();
    page.clock.tick(0);
    page.$('lora_trainer_train').disabled = true; // what refresh_view sets during such a run
    const before = page.clicks.lora_trainer_refresh || 0;
    page.clock.tick(9000);
    assert.equal(page.clicks.lora_trainer_refresh - before, 3);
    page.window.document.querySelector('#tabs .tab-nav button').click(); // to txt2img
    page.clock.tick(9000);
    assert.equal(page.clicks.lora_trainer_refresh - before, 3);
});

function promptAfterSend(existing, text) {
    const page = loadPage();
    const prompt = page.window.document.querySelector('#txt2img_prompt textarea');
    prompt.value = existing;
    let inputs = 0;
    prompt.addEventListener('input', (e) => {
        assert.equal(e.target, prompt);
        inputs += 1;
    });
    const result = page.window.loraTrainerSendToTxt2img(text);
    assert.deepEqual(Array.from(result), []);
    assert.equal(inputs, 1, 'gradio is told about the new value');
    const selected = page.window.document.querySelector('#tabs .tab-nav button.selected');
    assert.equal(selected.textContent.trim(), 'txt2img');
    assert.equal(page.$('tab_txt2img').style.display, 'block');
    assert.deepEqual(page.errors, []);
    return prompt.value;
}

test('Send to txt2img: into an empty prompt', () => {
    assert.equal(promptAfterSend('', '<lora:my_lora:0.8> sks toy'), '<lora:my_lora:0.8> sks toy');
});

test('Send to txt2img: appended to an existing prompt', () => {
    assert.equal(promptAfterSend('a photo, masterpiece', '<lora:my_lora:0.8> sks toy'),
        'a photo, masterpiece, <lora:my_lora:0.8> sks toy');
    assert.equal(promptAfterSend('a photo,  ', '<lora:my_lora:0.8> sks'), 'a photo, <lora:my_lora:0.8> sks');
});

test('Send to txt2img: replaces a tag of the same LoRA in place, keeps other LoRAs', () => {
    assert.equal(promptAfterSend('<lora:my_lora:0.5> sks toy, on a table, <lora:other:1>',
        '<lora:my_lora:0.8> sks toy'), '<lora:my_lora:0.8> sks toy, on a table, <lora:other:1>');
    assert.equal(promptAfterSend('a <lora:my_lora:1:0.5> b <lora:my_lora>', '<lora:my_lora:0.8>'),
        'a <lora:my_lora:0.8> b');
    assert.equal(promptAfterSend('<lora:my_lora_v2:1> x', '<lora:my_lora:0.8>'),
        '<lora:my_lora_v2:1> x, <lora:my_lora:0.8>');
});

test('Send to txt2img: trigger words already there are not repeated', () => {
    assert.equal(promptAfterSend('photo of sks toy', '<lora:my_lora:0.8> sks toy'),
        'photo of sks toy, <lora:my_lora:0.8>');
    assert.equal(promptAfterSend('SKS TOY, red', '<lora:t:1> sks toy, shiny'), 'SKS TOY, red, <lora:t:1> shiny');
    // a LoRA named like its trigger word: the name in the tag does not count as the word
    assert.equal(promptAfterSend('<lora:sks:0.5>', '<lora:sks:0.8> sks'), '<lora:sks:0.8>, sks');
    // a word inside another word does not count
    assert.equal(promptAfterSend('sksx toy', '<lora:a:1> sks'), 'sksx toy, <lora:a:1> sks');
    // sent twice: no change the second time
    const once = promptAfterSend('a photo', '<lora:my_lora:0.8> sks toy');
    assert.equal(promptAfterSend(once, '<lora:my_lora:0.8> sks toy'), once);
});

test('Send to txt2img: nothing to send changes nothing', () => {
    const page = loadPage();
    const prompt = page.window.document.querySelector('#txt2img_prompt textarea');
    prompt.value = 'keep';
    assert.deepEqual(Array.from(page.window.loraTrainerSendToTxt2img('')), []);
    assert.equal(prompt.value, 'keep');
    assert.equal(page.window.document.querySelector('#tabs .tab-nav button.selected').textContent.trim(), 'Train LoRA');
});

test('nothing throws when the tab or txt2img are not on the page', () => {
    for (const options of [{ withTab: false }, { withTxt2img: false }, { withTab: false, withTxt2img: false }]) {
        const page = loadPage({ ...options, localStorage: { lora_trainer_task_id: 'task(x)' } });
        page.clock.tick(1000);
        const [id, token] = startRun(page);
        assert.equal(token, 'token123');
        assert.match(id, /^task\(/);
        assert.deepEqual(Array.from(page.window.loraTrainerSendToTxt2img('<lora:a:1> b')), []);
        page.window.loraTrainerSetRunning(true);
        page.window.loraTrainerRefresh(true);
        page.clock.tick(10000);
        assert.deepEqual(page.errors, [], JSON.stringify(options));
    }
});
