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

# Seven articles on unrelated subjects (no two are near duplicates) and one page the fake model
# judges junk: enough LLM work to cut into slices and to sample (the budget and estimate tests).
TOPICS = [
    (
        "volcano",
        "Mount Etna on the east coast of Sicily is the most active volcano in Europe. It rises about 3,300 metres "
        "above the sea and its eruptions have been recorded for more than two thousand years. Farmers grow grapes, "
        "olives and pistachios on its fertile slopes, because the ash weathers into rich soil. A park protects the "
        "upper slopes, and scientists watch the summit craters with cameras, seismometers and gas sensors every day.",
    ),
    (
        "bees",
        "Honey bees live in colonies of up to sixty thousand workers, a few hundred drones and a single queen. "
        "Workers collect nectar and pollen from flowers and tell each other where food is with a waggle dance. "
        "The angle of the dance shows the direction relative to the sun, and its length shows the distance. "
        "A strong colony can store more than twenty kilograms of honey to survive a long and cold winter.",
    ),
    (
        "printing",
        "Johannes Gutenberg built a printing press with movable metal type in Mainz around the year 1450. "
        "His workshop cast letters from an alloy of lead, tin and antimony that melted at a low temperature. "
        "The famous Gutenberg Bible was finished by 1455, and fewer than fifty copies survive in libraries today. "
        "Within fifty years printing shops had spread to more than two hundred cities across the whole of Europe.",
    ),
    (
        "glacier",
        "A glacier forms where more snow falls in winter than melts in summer, year after year for centuries. "
        "The weight of new layers presses the old snow into dense blue ice that slowly flows downhill under gravity. "
        "Moving ice carves deep valleys shaped like the letter U and leaves ridges of rock called moraines behind. "
        "Many glaciers in the Alps have lost more than half of their volume since the middle of the last century.",
    ),
    (
        "chess",
        "Chess reached Europe from Persia through the Arab world about a thousand years ago, and its rules changed slowly. "
        "The queen became the strongest piece only in the fifteenth century, which made games much faster and sharper. "
        "The first official world championship was played in 1886 between Wilhelm Steinitz and Johannes Zukertort. "
        "Today millions of people play online every day, and computer engines are stronger than any human player.",
    ),
    (
        "coffee",
        "Coffee plants grow best in the highlands near the equator, where the climate is warm but never too hot. "
        "The two main species are arabica, prized for its flavour, and robusta, which carries more caffeine. "
        "After harvest the red cherries are pulped, fermented and dried before the green beans are shipped abroad. "
        "Roasting at about two hundred degrees turns the beans brown and creates hundreds of aroma compounds.",
    ),
    (
        "lighthouse",
        "The Pharos of Alexandria was one of the seven wonders of the ancient world and guided ships for centuries. "
        "Modern lighthouses used a Fresnel lens, invented in 1822, which bends light from a small lamp into a strong beam. "
        "Each lighthouse flashes in its own pattern, so sailors can tell at night which stretch of coast they are passing. "
        "Most lights now run automatically, and the last keepers in many countries left their towers decades ago.",
    ),
]
TOPIC_DOCS = [{"id": name, "text": text} for name, text in TOPICS] + [
    {
        "id": "menu",
        "text": "NAVIGATION ONLY. Our shop sells hand made furniture from oak, walnut and cherry wood that we buy from local mills. "
        "Every table and chair is built to order in the workshop behind the store, and most pieces are ready within six weeks. "
        "We deliver to every town in the region and take old furniture away for free when we bring the new one to your home.",
    },
]
