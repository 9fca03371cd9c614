// The panel's service worker: it shows the daemon's Web Push
// notifications. Acting on one opens the panel's page for it, where the
// person's signed-in session decides; a notification decides nothing.
"use strict";

self.addEventListener("push", (e) => {
  let m = {};
  try { m = e.data ? e.data.json() : {}; } catch (err) { m = { title: "taosagent" }; }
  const actions = m.kind === "approval" ? [{ action: "approve", title: "Approve" }, { action: "reject", title: "Reject" }] : [];
  e.waitUntil(self.registration.showNotification(m.title || "taosagent", {
    body: m.body || (m.agent ? "agent " + m.agent : ""),
    tag: m.id, // a repeat of one notification replaces it
    data: { url: m.url || "/" },
    actions,
    icon: "/panel/favicon.svg",
  }));
});

self.addEventListener("notificationclick", (e) => {
  e.notification.close();
  const url = new URL(e.notification.data?.url || "/", self.location.origin);
  if (url.origin !== self.location.origin) return; // only the panel's own pages
  e.waitUntil(self.clients.openWindow(url.href));
});
