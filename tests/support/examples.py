"""Two hand-made HotpotQA-shaped examples for the stand-in reader's tests (a comparison and a
bridge question, with distractor paragraphs titled Paris and Berlin)."""

COMPARISON = {
    "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
    "answer": "yes",
    "paragraphs": [
        ["Ed Wood (film)", ["Ed Wood is a 1994 American biographical film directed by Tim Burton."]],
        [
            "Scott Derrickson",
            ["Scott Derrickson is an American director and screenwriter.", "He lives in Los Angeles."],
        ],
        ["Ed Wood", ["Edward Davis Wood Jr. was an American filmmaker and actor."]],
        ["Doctor Strange (2016 film)", ["Doctor Strange is a 2016 American superhero film."]],
    ],
    "supporting_facts": [["Scott Derrickson", 0], ["Ed Wood", 0]],
}
BRIDGE = {
    "question": "Which city hosts the university where the inventor of the Zorbatron studied?",
    "answer": "Vienna",
    "paragraphs": [
        ["Zorbatron", ["The Zorbatron was invented by Anna Keller.", "It was patented in 1931."]],
        ["Anna Keller", ["Anna Keller studied at the University of Vienna."]],
        ["Paris", ["Paris is the capital of France."]],
        ["Berlin", ["Berlin is the capital of Germany."]],
    ],
    "supporting_facts": [["Zorbatron", 0], ["Anna Keller", 0]],
}
