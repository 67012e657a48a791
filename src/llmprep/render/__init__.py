"""Chat templates: look them up (lookup), compile them in a sandbox (sandbox), render conversations
and find the characters each assistant turn owns (renderer).

    --template value -> jinja source -> sandboxed Template -> text + trained character spans
"""

from llmprep.render.lookup import builtin_templates, resolve_template, template_fingerprint
from llmprep.render.opaque import content_is_opaque
from llmprep.render.renderer import ChatRenderer, Span, render_prompt
from llmprep.render.sandbox import compile_template

__all__ = ["ChatRenderer", "Span", "builtin_templates", "compile_template", "content_is_opaque", "render_prompt",
           "resolve_template", "template_fingerprint"]
