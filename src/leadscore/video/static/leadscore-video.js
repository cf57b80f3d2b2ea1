/*! leadscore-video.js: Segment Video Spec events from HTML5 <video> elements to leadscore.
 *
 * Dependency-free, ES5 (runs in every browser that has fetch; falls back to XHR otherwise).
 * Embed (see docs/video-tracker.md):
 *   <script src="https://leadscore.example.com/tracker/leadscore-video.js"
 *           data-write-key="wk_..." async></script>
 *   <video data-leadscore data-video-id="demo-1" src="demo.mp4" controls></video>
 *
 * Sends, per player session: Video Playback Started + Video Content Started, a Video Content Playing
 * heartbeat every 10 s while playing (the timer restarts at every event, and one follows Resumed),
 * Paused / Resumed, Seek Started (position = from, seek_position = to) / Seek Completed, Buffer
 * Started / Completed, Video Playback Rate Changed (leadscore's own), Content + Playback Completed,
 * Exited when the page goes away, and Video Player Shown (leadscore's own) when a player is first seen.
 * Every event carries session_id, content_asset_id (asset_id on Content events), position,
 * total_length, playback_rate, sound, full_screen, video_player = "html5".
 * Transport: batches POSTed to {endpoint}/v1/batch with HTTP Basic (write key as user name); retries
 * with backoff on network errors, 408/429/5xx (honouring Retry-After) under the same messageIds (the
 * server dedups); navigator.sendBeacon (writeKey in the body, text/plain) when the page is hidden.
 */
(function (window, document) {
  'use strict';
  if (!window || !document || window.LeadscoreVideo) { return; }

  var VERSION = '1.0.0';
  var script = document.currentScript || (function () {
    var all = document.getElementsByTagName('script');
    for (var i = all.length - 1; i >= 0; i--) {
      if (/leadscore-video(\.min)?\.js/.test(all[i].src || '')) { return all[i]; }
    }
    return null;
  })();
  var preset = window.leadscoreVideoConfig || {};

  function attr(name) { return script ? script.getAttribute(name) : null; }
  function num(value, fallback) { var n = parseFloat(value); return isFinite(n) && n > 0 ? n : fallback; }
  function originOf(src) {
    var m = /^(https?:\/\/[^\/]+)/.exec(src || '');
    return m ? m[1] : window.location.origin;
  }

  var config = {
    writeKey: preset.writeKey || attr('data-write-key') || '',
    endpoint: (preset.endpoint || attr('data-endpoint') || originOf(script && script.src)).replace(/\/+$/, ''),
    heartbeat: num(preset.heartbeat || attr('data-heartbeat'), 10),           // seconds
    flushInterval: num(preset.flushInterval || attr('data-flush-interval'), 2), // seconds
    maxBatch: num(preset.maxBatch || attr('data-max-batch'), 50),
    maxRetries: num(preset.maxRetries, 6),
    userId: preset.userId || attr('data-user-id') || null,
    pageView: !!(preset.pageView || (script && script.hasAttribute('data-page-view')))
  };

  // ---------- ids and time
  function uuid() {
    if (window.crypto && window.crypto.randomUUID) { return window.crypto.randomUUID(); }
    var d = new Date().getTime();
    return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, function (c) {
      var r = (d + Math.random() * 16) % 16 | 0; d = Math.floor(d / 16);
      return (c === 'x' ? r : (r & 0x3 | 0x8)).toString(16);
    });
  }
  var anonymousId = (function () {
    var key = 'leadscore_anonymous_id', value = null;
    try { value = window.localStorage.getItem(key); } catch (e) { /* storage blocked */ }
    if (!value) {
      value = uuid();
      try { window.localStorage.setItem(key, value); } catch (e2) { /* keep it for this page only */ }
    }
    return value;
  })();
  var lastStamp = 0;
  function stamp() {  // client timestamps strictly increase, so equal-millisecond events keep their order
    var t = Date.now();
    if (t <= lastStamp) { t = lastStamp + 1; }
    lastStamp = t;
    return new Date(t).toISOString();
  }
  function round3(x) { return Math.round(x * 1000) / 1000; }

  // ---------- queue and transport
  var queue = [];          // messages not yet handed to the network
  var inflight = 0;        // requests under way
  var waiters = [];        // flush() promises waiting for the queue to empty
  var flushTimer = null;

  function context() {
    return {
      library: { name: 'leadscore-video.js', version: VERSION },
      page: { path: window.location.pathname, url: window.location.href, title: document.title,
              referrer: document.referrer, search: window.location.search },
      userAgent: window.navigator.userAgent,
      locale: window.navigator.language
    };
  }

  function enqueue(message) {
    message.messageId = uuid();
    message.anonymousId = anonymousId;
    if (config.userId) { message.userId = config.userId; }
    message.timestamp = message.timestamp || stamp();
    message.context = context();
    queue.push(message);
    if (queue.length >= config.maxBatch) { flush(); }
    else if (!flushTimer) { flushTimer = window.setTimeout(flush, config.flushInterval * 1000); }
  }

  function settle() {
    if (queue.length === 0 && inflight === 0) {
      var w = waiters; waiters = [];
      for (var i = 0; i < w.length; i++) { w[i](); }
    }
  }

  function send(batch, attempt) {
    inflight++;
    var body = JSON.stringify({ batch: batch, sentAt: new Date().toISOString() });
    var done = function (retryAfter) {
      inflight--;
      if (retryAfter !== null && attempt < config.maxRetries) {
        var wait = retryAfter > 0 ? retryAfter * 1000 : Math.min(30000, 500 * Math.pow(2, attempt));
        inflight++;  // still ours until it is re-sent
        window.setTimeout(function () { inflight--; send(batch, attempt + 1); }, wait);
      } else if (retryAfter !== null && window.console) {
        window.console.warn('leadscore-video: giving up on ' + batch.length + ' events after ' + attempt + ' retries');
      }
      settle();
    };
    var retryable = function (status) { return status === 408 || status === 429 || status >= 500; };
    var headers = { 'Content-Type': 'application/json', 'Authorization': 'Basic ' + window.btoa(config.writeKey + ':') };
    if (window.fetch) {
      window.fetch(config.endpoint + '/v1/batch', { method: 'POST', headers: headers, body: body,
                                                     keepalive: body.length < 60000, mode: 'cors' })
        .then(function (res) {
          if (res.ok) { done(null); return; }
          if (retryable(res.status)) { done(parseFloat(res.headers.get('Retry-After')) || 0); return; }
          if (window.console) { window.console.warn('leadscore-video: batch refused with HTTP ' + res.status); }
          done(null);  // a 4xx will be refused again: drop it (as the Segment SDKs do)
        }, function () { done(0); });
    } else {
      var xhr = new window.XMLHttpRequest();
      xhr.open('POST', config.endpoint + '/v1/batch', true);
      for (var h in headers) { if (headers.hasOwnProperty(h)) { xhr.setRequestHeader(h, headers[h]); } }
      xhr.onload = function () {
        if (xhr.status >= 200 && xhr.status < 300) { done(null); }
        else if (retryable(xhr.status)) { done(parseFloat(xhr.getResponseHeader('Retry-After')) || 0); }
        else { done(null); }
      };
      xhr.onerror = function () { done(0); };
      xhr.send(body);
    }
  }

  function flush() {
    if (flushTimer) { window.clearTimeout(flushTimer); flushTimer = null; }
    while (queue.length) { send(queue.splice(0, config.maxBatch), 0); }
    return new Promise(function (resolve) { waiters.push(resolve); settle(); });
  }

  function beacon() {
    // The page is going away: sendBeacon survives unload but cannot set headers, so the key goes in
    // the body and the type is text/plain (no CORS preflight). Beacons carry at most ~64 KB each.
    if (flushTimer) { window.clearTimeout(flushTimer); flushTimer = null; }
    while (queue.length) {
      var n = Math.min(queue.length, config.maxBatch), body;
      do {
        body = JSON.stringify({ batch: queue.slice(0, n), sentAt: new Date().toISOString(), writeKey: config.writeKey });
        n = Math.ceil(n / 2);
      } while (body.length > 60000 && n > 1);
      var batch = queue.splice(0, JSON.parse(body).batch.length);
      var ok = false;
      if (window.navigator.sendBeacon) {
        try { ok = window.navigator.sendBeacon(config.endpoint + '/v1/batch', new Blob([body], { type: 'text/plain;charset=UTF-8' })); }
        catch (e) { ok = false; }
      }
      if (!ok) { send(batch, 0); }
    }
  }

  // ---------- players
  var players = [];

  function Player(video) {
    this.video = video;
    this.sessionId = null;
    this.started = false;
    this.playing = false;
    this.seeking = false;
    this.buffering = false;
    this.shown = false;
    this.hbTimer = null;
    this.lastPos = 0;       // last known playhead, and when it was read (performance.now)
    this.lastPosAt = 0;
    this.rate = video.playbackRate || 1;
  }

  Player.prototype.videoId = function () {
    var v = this.video;
    var id = v.getAttribute('data-video-id') || v.getAttribute('data-leadscore');
    if (!id) { id = (v.currentSrc || v.src || '').split('?')[0].split('/').pop() || 'video'; }
    return id;
  };

  Player.prototype.now = function () { return window.performance ? window.performance.now() : Date.now(); };

  Player.prototype.position = function () {
    return this.video.currentTime;
  };

  // The playhead just before a seek: 'seeking' fires with currentTime already at the target, so the
  // "from" is the last position read while playing, advanced by the time since at the playback rate.
  Player.prototype.estimate = function () {
    var p = this.lastPos;
    if (this.playing && !this.buffering) { p += (this.now() - this.lastPosAt) / 1000 * this.rate; }
    var d = this.video.duration;
    if (isFinite(d) && p > d) { p = d; }
    return p;
  };

  Player.prototype.remember = function (pos) { this.lastPos = pos; this.lastPosAt = this.now(); };

  Player.prototype.track = function (event, position, extra) {
    var v = this.video, d = v.duration, id = this.videoId();
    var props = {
      session_id: this.sessionId,
      position: round3(Math.max(0, position)),
      total_length: isFinite(d) ? round3(d) : null,
      playback_rate: this.rate,
      sound: v.muted ? 0 : Math.round((v.volume || 0) * 100),
      full_screen: !!(document.fullscreenElement && document.fullscreenElement === v),
      video_player: 'html5',
      livestream: !isFinite(d)
    };
    if (event.indexOf('Video Content') === 0) {
      props.asset_id = id;
      props.title = v.getAttribute('data-title') || v.getAttribute('title') || null;
    } else {
      props.content_asset_id = id;
    }
    if (extra) { for (var k in extra) { if (extra.hasOwnProperty(k)) { props[k] = extra[k]; } } }
    enqueue({ type: 'track', event: event, properties: props });
    this.schedule();
  };

  // Heartbeats: one heartbeat interval after the last event of this player, while it plays.
  Player.prototype.schedule = function () {
    var self = this;
    if (this.hbTimer) { window.clearTimeout(this.hbTimer); this.hbTimer = null; }
    if (this.playing && !this.seeking && !this.buffering) {
      this.hbTimer = window.setTimeout(function () {
        self.hbTimer = null;
        if (self.playing && !self.video.paused) {
          var p = self.position(); self.remember(p);
          self.track('Video Content Playing', p);
        }
      }, config.heartbeat * 1000);
    }
  };

  Player.prototype.begin = function () {
    var p = this.position();
    this.sessionId = uuid();
    this.started = true;
    this.playing = true;
    this.remember(p);
    this.track('Video Playback Started', p, { content_asset_ids: [this.videoId()] });
    this.track('Video Content Started', p);
  };

  Player.prototype.onPlay = function () {
    this.rate = this.video.playbackRate || 1;
    if (!this.started) { this.begin(); return; }
    if (this.playing) { return; }
    var p = this.position();
    this.playing = true;
    this.remember(p);
    this.track('Video Playback Resumed', p);
    this.track('Video Content Playing', p);
  };

  Player.prototype.onPause = function () {
    if (!this.started || !this.playing || this.video.ended) { return; }  // 'ended' reports the end
    var p = this.position();
    this.playing = false;
    this.remember(p);
    this.track('Video Playback Paused', p);
  };

  Player.prototype.onSeeking = function () {
    if (!this.started) { return; }
    if (this.seeking) { return; }   // a second seek before the first completed: one pair suffices
    var from = this.estimate();
    this.seeking = true;
    this.track('Video Playback Seek Started', from, { seek_position: round3(this.position()) });
  };

  Player.prototype.onSeeked = function () {
    if (!this.started || !this.seeking) { return; }
    var p = this.position();
    this.seeking = false;
    this.remember(p);
    this.track('Video Playback Seek Completed', p);
  };

  Player.prototype.onWaiting = function () {
    if (!this.started || !this.playing || this.seeking || this.buffering) { return; }
    var p = this.position();
    this.buffering = true;
    this.remember(p);
    this.track('Video Playback Buffer Started', p);
  };

  Player.prototype.onPlaying = function () {
    if (!this.buffering) { return; }
    var p = this.position();
    this.buffering = false;
    this.remember(p);
    this.track('Video Playback Buffer Completed', p);
  };

  Player.prototype.onRate = function () {
    var rate = this.video.playbackRate;
    if (!this.started || !(rate > 0) || rate === this.rate) { this.rate = rate > 0 ? rate : this.rate; return; }
    var p = this.estimate();
    this.rate = rate;
    this.remember(p);
    this.track('Video Playback Rate Changed', p);
  };

  Player.prototype.onTime = function () {
    if (this.playing && !this.seeking) { this.remember(this.position()); }
  };

  Player.prototype.onEnded = function () {
    if (!this.started) { return; }
    var d = this.video.duration, p = isFinite(d) ? d : this.position();
    this.playing = false;
    this.remember(p);
    this.track('Video Content Completed', p);
    this.track('Video Playback Completed', p);
    this.started = false;   // playing again opens a new session
  };

  Player.prototype.exit = function () {
    if (!this.started) { return; }
    var p = this.estimate();
    this.playing = false;
    this.track('Video Playback Exited', p);
    this.started = false;
  };

  Player.prototype.onShown = function () {
    if (this.shown) { return; }
    this.shown = true;
    enqueue({ type: 'track', event: 'Video Player Shown', properties: {
      content_asset_id: this.videoId(), video_player: 'html5',
      total_length: isFinite(this.video.duration) ? round3(this.video.duration) : null } });
  };

  function attach(video) {
    if (!video || video.__leadscore) { return video && video.__leadscore; }
    var p = new Player(video);
    video.__leadscore = p;
    players.push(p);
    var on = function (name, fn) { video.addEventListener(name, function () { fn.call(p); }); };
    on('play', p.onPlay);
    on('pause', p.onPause);
    on('seeking', p.onSeeking);
    on('seeked', p.onSeeked);
    on('waiting', p.onWaiting);
    on('playing', p.onPlaying);
    on('ratechange', p.onRate);
    on('timeupdate', p.onTime);
    on('ended', p.onEnded);
    if (window.IntersectionObserver) {
      var io = new window.IntersectionObserver(function (entries) {
        for (var i = 0; i < entries.length; i++) {
          if (entries[i].isIntersecting) { p.onShown(); io.disconnect(); }
        }
      }, { threshold: 0.5 });
      io.observe(video);
    } else {
      p.onShown();
    }
    if (!video.paused) { p.onPlay(); }   // autoplay began before we attached
    return p;
  }

  function scan(root) {
    var found = (root || document).querySelectorAll ? (root || document).querySelectorAll('video[data-leadscore]') : [];
    for (var i = 0; i < found.length; i++) { attach(found[i]); }
  }

  function start() {
    if (config.pageView) {
      enqueue({ type: 'page', name: document.title, properties: { path: window.location.pathname,
        url: window.location.href, title: document.title, referrer: document.referrer } });
    }
    scan(document);
    if (window.MutationObserver) {
      new window.MutationObserver(function (records) {
        for (var i = 0; i < records.length; i++) {
          var added = records[i].addedNodes;
          for (var j = 0; j < added.length; j++) {
            var node = added[j];
            if (node.nodeType !== 1) { continue; }
            if (node.tagName === 'VIDEO' && node.hasAttribute('data-leadscore')) { attach(node); }
            else { scan(node); }
          }
        }
      }).observe(document.documentElement, { childList: true, subtree: true });
    }
  }

  function leaving() {
    for (var i = 0; i < players.length; i++) { players[i].exit(); }
    beacon();
  }
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'hidden') { beacon(); }
  });
  window.addEventListener('pagehide', leaving);

  window.LeadscoreVideo = {
    version: VERSION,
    config: config,
    attach: attach,
    flush: flush,
    identify: function (userId) { config.userId = userId ? String(userId) : null; },
    anonymousId: function () { return anonymousId; },
    pending: function () { return queue.length + inflight; }
  };

  if (document.readyState === 'loading') { document.addEventListener('DOMContentLoaded', start); }
  else { start(); }
})(typeof window !== 'undefined' ? window : null, typeof document !== 'undefined' ? document : null);
