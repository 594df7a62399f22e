"""Random service names as dockerd gives a service created without one (`docker service
create IMAGE`): `<adjective>_<surname>`, from a part of moby's pkg/namesgenerator lists.

dockerd names the service in its API layer (daemon/cluster/convert: an empty
`Spec.Name` becomes `namesgenerator.GetRandomName(0)`) before swarmkit checks it; shoal does
it at the start of `create_service`, so the leader and a forwarding follower agree.
"""

from __future__ import annotations

import secrets

__all__ = ["random_name"]

LEFT = (
    "admiring", "adoring", "affectionate", "agitated", "amazing", "angry", "awesome",
    "beautiful", "blissful", "bold", "brave", "busy", "charming", "clever", "compassionate",
    "competent", "condescending", "confident", "cool", "cranky", "crazy", "dazzling",
    "determined", "distracted", "dreamy", "eager", "ecstatic", "elastic", "elated", "elegant",
    "eloquent", "epic", "exciting", "fervent", "festive", "flamboyant", "focused", "friendly",
    "frosty", "funny", "gallant", "gifted", "goofy", "gracious", "great", "happy",
    "hardcore", "heuristic", "hopeful", "hungry", "infallible", "inspiring", "intelligent",
    "interesting", "jolly", "jovial", "keen", "kind", "laughing", "loving", "lucid",
    "magical", "modest", "musing", "mystifying", "naughty", "nervous", "nice", "nifty",
    "nostalgic", "objective", "optimistic", "peaceful", "pedantic", "pensive", "practical",
    "priceless", "quirky", "quizzical", "recursing", "relaxed", "reverent", "romantic",
    "sad", "serene", "sharp", "silly", "sleepy", "stoic", "strange", "stupefied",
    "suspicious", "sweet", "tender", "thirsty", "trusting", "unruffled", "upbeat",
    "vibrant", "vigilant", "vigorous", "wizardly", "wonderful", "xenodochial", "youthful",
    "zealous", "zen",
)  # fmt: skip
RIGHT = (
    "agnesi", "albattani", "allen", "almeida", "archimedes", "ardinghelli", "aryabhata",
    "babbage", "banach", "bardeen", "bartik", "bassi", "bell", "benz", "bhabha", "bohr",
    "booth", "borg", "bose", "brahmagupta", "brown", "burnell", "cannon", "carson", "cerf",
    "chandrasekhar", "chatelet", "chaum", "colden", "cori", "cray", "curie", "darwin",
    "davinci", "dijkstra", "dirac", "driscoll", "dubinsky", "easley", "einstein", "elion",
    "engelbart", "euclid", "euler", "faraday", "fermat", "fermi", "feynman", "franklin",
    "galileo", "gates", "goldberg", "goldstine", "golick", "goodall", "hamilton", "hawking",
    "heisenberg", "hermann", "hodgkin", "hofstadter", "hoover", "hopper", "hugle",
    "hypatia", "jackson", "jang", "jennings", "jepsen", "johnson", "joliot", "jones",
    "kalam", "kapitsa", "keller", "kepler", "khorana", "kilby", "kirch", "knuth",
    "kowalevski", "lalande", "lamarr", "lamport", "leakey", "leavitt", "lederberg",
    "lehmann", "lewin", "lichterman", "liskov", "lovelace", "lumiere", "mahavira",
    "margulis", "matsumoto", "maxwell", "mayer", "mccarthy", "mcclintock", "mclean",
    "meitner", "mendel", "merkle", "mirzakhani", "morse", "murdock", "napier", "nash",
    "neumann", "newton", "nobel", "noether", "northcutt", "noyce", "panini", "pare",
    "pascal", "pasteur", "payne", "perlman", "pike", "poincare", "poitras", "ptolemy",
    "raman", "ramanujan", "ride", "ritchie", "robinson", "roentgen", "rosalind", "rubin",
    "saha", "sammet", "shannon", "shaw", "shirley", "shockley", "sinoussi", "snyder",
    "spence", "stonebraker", "sutherland", "swanson", "swartz", "swirles", "taussig",
    "tesla", "thompson", "torvalds", "turing", "varahamihira", "villani", "visvesvaraya",
    "volhard", "wescoff", "wiles", "williams", "wilson", "wing", "wozniak", "wright", "wu",
    "yalow", "yonath", "zhukovsky",
)  # fmt: skip


def random_name() -> str:
    """`adjective_surname`, as `docker service create IMAGE` names its service."""
    return f"{secrets.choice(LEFT)}_{secrets.choice(RIGHT)}"
