"""The `escalate` step's way out of the channel: a text with a link to go on where they were.

The customer gets a text with a continue link (`/c/<token>`, signed, expiring, single use:
`ivr.channels.links`), and the number's SMS thread is bound to the conversation. Opening the link
continues it in a web chat; replying to the text continues it by SMS (`escalate: {channel: sms}`
invites the reply, `chat` only the link). Either way at the resume step, with identity and slots
kept, and the reply is taken as the answer to its first open question: nothing is asked twice.
"""

from __future__ import annotations

from ivr.channels.links import ContinueLinks
from ivr.channels.sms.service import SmsConversations
from ivr.conversation import Conversation, Role
from ivr.flow import model as m

BY_SMS = "To go on where we left off, reply to this text, or continue in your browser: {link}"
BY_CHAT = "Continue our conversation in your browser: {link}"


class SmsHandoff:
    def __init__(self, links: ContinueLinks, threads: SmsConversations) -> None:
        self.links = links
        self.threads = threads

    async def escalate(self, conv: Conversation, action: m.EscalateAction, to: str | None) -> None:
        if not to:  # the step checks first; nothing to send the link to
            raise ValueError("no phone number to send the link to")
        conv.contact.setdefault("phone", to)
        template = BY_SMS if action.channel == "sms" else BY_CHAT
        link = self.links.make(conv.id)
        sent = await self.threads.outbox.send(to, template.format(link=link), conv.id)
        if sent.state == "suppressed":
            raise ValueError(f"{to} opted out of texts")
        await self.threads.bind(to, conv.id)
        # On the timeline as the customer got it, but the link: whoever reads the transcript
        # (an agent, the chat's history) must not be able to open the conversation with it.
        conv.add_turn("sms", Role.BOT, template.format(link="[link]"), kind="escalation")
