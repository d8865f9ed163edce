/*
 * The agent desktop's softphone: the agent's microphone and speaker on a call they took.
 *
 * One Softphone per call: an RTCPeerConnection whose offer goes over the desk's socket
 * ("audio_offer"); the server answers with a leg of its own on the media worker that holds the
 * caller, bridged to the caller ("audio_answer"). Our ICE candidates trickle after the answer,
 * as the visitor widget's do. Loaded before agent.js, which drives it (window.IvrSoftphone).
 *
 * States (the .softphone element's data-state): "starting" (asking for the microphone),
 * "connecting", "connected", "ended", "failed" (the reason in `.reason`).
 */
(() => {
  "use strict";

  const CONNECT_MAX_MS = 15000;

  class Softphone {
    /**
     * @param {{conversationId: string, iceServers: object[], send: (frame: object) => boolean,
     *          audio: HTMLAudioElement, onState: (phone: Softphone) => void}} options
     */
    constructor(options) {
      this.conversationId = options.conversationId;
      this.iceServers = options.iceServers || [];
      this.send = options.send;
      this.audio = options.audio;
      this.onState = options.onState;
      this.state = "starting";
      this.reason = "";
      this.muted = false;
      this.pc = null;
      this.stream = null;
      this.answered = false;
      this.answerCame = false; // the server's answer arrived: its leg is this softphone's
      this.pendingCandidates = [];
      this.timer = null;
    }

    async start() {
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({
          audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        });
      } catch (error) {
        this.fail(`the microphone could not be opened (${error && error.name || error})`);
        return;
      }
      if (this.state !== "starting") { this.release(); return; } // stopped meanwhile
      const pc = this.pc = new RTCPeerConnection({ iceServers: this.iceServers });
      for (const track of this.stream.getAudioTracks()) pc.addTrack(track, this.stream);
      pc.ontrack = (event) => {
        this.audio.srcObject = event.streams[0] || new MediaStream([event.track]);
        this.audio.play().catch(() => {}); // refused autoplay: the element retries when it can
      };
      pc.onconnectionstatechange = () => {
        if (pc !== this.pc) return;
        if (pc.connectionState === "connected") this.setState("connected");
        else if (pc.connectionState === "failed") this.fail("the call's audio was lost");
      };
      pc.onicecandidate = (event) => {
        const c = event.candidate;
        if (!c || !c.candidate || pc !== this.pc) return;
        const frame = { type: "audio_candidate", conversation_id: this.conversationId,
          candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
        if (this.answered) this.send(frame);
        else this.pendingCandidates.push(frame);
      };
      try {
        await pc.setLocalDescription(await pc.createOffer());
      } catch (error) {
        if (pc === this.pc) this.fail(`the softphone could not start (${error.message})`);
        return;
      }
      if (pc !== this.pc) return;
      this.setState("connecting");
      this.timer = setTimeout(() => {
        if (this.state === "connecting") this.fail("the call's audio did not connect in time");
      }, CONNECT_MAX_MS);
      if (!this.send({ type: "audio_offer", conversation_id: this.conversationId,
        sdp: pc.localDescription.sdp })) {
        this.fail("the connection to the server was lost");
      }
    }

    async answer(sdp) {
      const pc = this.pc;
      if (!pc || this.answered) return;
      this.answerCame = true;
      try {
        await pc.setRemoteDescription({ type: "answer", sdp });
      } catch (error) {
        this.fail(`the server's answer could not be used (${error.message})`);
        return;
      }
      this.answered = true;
      for (const frame of this.pendingCandidates.splice(0)) this.send(frame);
    }

    mute(on) {
      this.muted = Boolean(on);
      if (this.stream) for (const track of this.stream.getAudioTracks()) track.enabled = !this.muted;
      this.onState(this);
    }

    /** The call's audio as this browser hears it (for the desk and for tests). */
    async inbound() {
      if (!this.pc) return null;
      let found = null;
      (await this.pc.getStats()).forEach((report) => {
        if (report.type === "inbound-rtp" && report.kind === "audio") found = report;
      });
      return found && { energy: found.totalAudioEnergy || 0, samples: found.totalSamplesReceived || 0,
        packets: found.packetsReceived || 0 };
    }

    fail(reason) {
      this.reason = reason;
      this.setState("failed");
      this.release();
    }

    /** Over (the call ended, or the server said the leg is gone). */
    stop(reason = "") {
      if (this.state === "ended" || this.state === "failed") return;
      this.reason = reason;
      this.setState("ended");
      this.release();
    }

    setState(state) {
      this.state = state;
      if (state !== "connecting") clearTimeout(this.timer);
      this.onState(this);
    }

    release() {
      clearTimeout(this.timer);
      const pc = this.pc;
      this.pc = null;
      if (pc) pc.close();
      if (this.stream) for (const track of this.stream.getTracks()) track.stop();
      this.stream = null;
      this.audio.srcObject = null;
    }
  }

  window.IvrSoftphone = Softphone;
})();
