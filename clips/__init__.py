"""Where video comes from: mp4 decode/encode (`clips.io`), the bundled corpus (`clips.corpus`),
synthetic captioned scenes and their oracle (`clips.synthetic`), a user folder
(`clips.folder`), and `DataSpec` / `load_clips` (`clips.dataset`), which tie them together.

Only the light records are re-exported here, so `import clips` stays cheap.
"""

from clips.errors import ClipError
from clips.types import Clip

__all__ = ["Clip", "ClipError"]
