"""Input documents shared by the tests that run the pipeline."""

from __future__ import annotations

ARTICLE = (
    "The Danube is the second-longest river in Europe, after the Volga. It rises in the Black Forest "
    "of Germany and flows for about 2,850 kilometres through ten countries before it reaches the Black "
    "Sea. Four capital cities stand on its banks: Vienna, Bratislava, Budapest and Belgrade. The river "
    "has carried trade since Roman times, when it formed part of the northern frontier of the empire. "
    "Today its delta in Romania and Ukraine is a protected wetland and home to more than 300 species of birds."
)
ARTICLE2 = (
    "Photosynthesis is the process by which green plants turn light into chemical energy. Inside the "
    "chloroplasts, chlorophyll absorbs mostly blue and red light. Water molecules are split, releasing "
    "oxygen, while carbon dioxide from the air is fixed into sugars in the Calvin cycle. The overall "
    "reaction uses six molecules of carbon dioxide and six of water to make one molecule of glucose. "
    "Nearly all the oxygen in the atmosphere was produced by photosynthetic organisms over billions of years."
)

# Eight documents: four articles (variants of the two above), an exact copy and three kinds of junk.
# The crash-safety and cluster runs compare whole warehouses built from them.
ARTICLE_VARIANTS = [
    {"id": "danube", "text": ARTICLE},
    {"id": "elbe", "text": ARTICLE.replace("Danube", "Elbe")},
    {"id": "photo", "text": ARTICLE2},
    {"id": "chemo", "text": ARTICLE2.replace("Photosynthesis", "Chemosynthesis")},
    {"id": "copy", "text": ARTICLE.upper()},
    {"id": "short", "text": "Buy now! Limited offer."},
    {"id": "empty", "text": " "},
    {"id": "nav", "text": "NAVIGATION ONLY. " + ARTICLE2.replace("Photosynthesis", "Respiration")},
]
