// Follows the live updates: a WebSocket that resumes from the last position after a drop, and
// polling of /leads/changes where WebSockets are not available or keep failing.
import { useEffect, useRef } from "react";
import { api } from "../api/client";
import type { LiveMessage } from "./messages";

/**
 * `from` is the `livePosition` that came with what the page shows: the socket first resumes
 * from it, so a change made between the page's read and the socket's start is not lost. `null`
 * waits for it; left out, the socket is live from whenever it starts.
 */
export function useLiveUpdates(token: string | null | undefined, onMessage: (message: LiveMessage) => void, from?: number | null) {
  const handler = useRef(onMessage);
  handler.current = onMessage;
  // The last position delivered, kept across reconnects (a refreshed token opens a new socket,
  // which resumes from here: nothing in between is lost or delivered twice).
  const last = useRef<number | null>(null);
  const known = from !== null;
  if (known && last.current === null) last.current = from ?? 0;
  useEffect(() => {
    if (!token || !known) return;
    let stopped = false;
    let socket: WebSocket | null = null;
    let failures = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deliver = (message: LiveMessage) => {
      if (message.position <= (last.current ?? 0)) return;
      last.current = message.position;
      handler.current(message);
    };
    const poll = async () => {
      if (stopped) return;
      try {
        const messages = await api<LiveMessage[]>(`/leads/changes?after=${last.current ?? 0}`, { token });
        messages.forEach(deliver);
      } catch {
        /* the next poll tries again */
      }
      timer = setTimeout(poll, 5000);
    };
    const connect = () => {
      if (stopped) return;
      if (typeof WebSocket === "undefined" || failures >= 3) return void poll();
      const scheme = window.location.protocol === "https:" ? "wss" : "ws";
      // The token goes in the first message, not the URL: URLs end up in logs (contract 6).
      socket = new WebSocket(`${scheme}://${window.location.host}/ws`);
      socket.onopen = () => {
        failures = 0;
        socket?.send(JSON.stringify({ type: "auth", token }));
        const after = last.current ?? 0;
        if (after > 0) socket?.send(JSON.stringify({ type: "resume", after }));
      };
      socket.onmessage = (event) => deliver(JSON.parse(event.data as string) as LiveMessage);
      socket.onclose = (event) => {
        if (stopped || event.code === 4401 || event.code === 4403) return;
        failures += event.wasClean ? 0 : 1;
        timer = setTimeout(connect, Math.min(1000 * 2 ** failures, 15000));
      };
    };
    // From the page's position (or from now); after a drop, resume from `last`.
    connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      socket?.close();
    };
  }, [token, known]);
}
