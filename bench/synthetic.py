"""Synthetic regional news: outlets, their item streams, and the RSS bodies the farm serves.

Everything is a pure function of (feed number, version) so the farm, the
bench and any process that checks results agree without sharing state.

The model, per feed ``i`` of a farm:

* a language (en 55 %, ar 25 %, fa 10 %, tr 10 %) and a region;
* a stream of items numbered 0, 1, 2, ...; version ``v`` of the feed lists the
  ``items`` newest, ``s = v * new_per_change + items - 1`` down to
  ``v * new_per_change``; a change publishes ``new_per_change`` new items;
* about 30 % of items are wire copy: the same story (same body) carried by
  every outlet of that language that reached the same stream position, so one
  article gets many sightings; a fifth of those copies add an editor's note
  (a different content hash, the same story for the story clustering);
* the rest are the outlet's own stories.

Bodies are about 3.5 kB of text per item (8 paragraphs), about 75 kB per
20-item feed, the size the issue's parser floors were measured on.
"""

from __future__ import annotations

import functools
import hashlib
import random
from datetime import UTC, datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape

LANGUAGES = (("en", 55), ("ar", 25), ("fa", 10), ("tr", 10))
REGIONS = {
    "en": ("gulf", "levant", "maghreb", "caucasus"),
    "ar": ("gulf", "levant", "maghreb"),
    "fa": ("iran", "afghanistan"),
    "tr": ("turkey", "cyprus"),
}
WIRE_PERCENT = 30
EDITED_WIRE_PERCENT = 20  # of wire copies
WIRE_STORIES_PER_STEP = 4  # distinct wire stories at one stream position
PARAGRAPHS = 8
WORDS_PER_PARAGRAPH = 55
ITEM_GAP_SECONDS = 600  # publishing gap between consecutive items of a feed


def _words(text: str) -> list[str]:
    return text.split()


_EN = _words("""
minister government port oil gas prices market exports city council water power
plant ministry officials said on tuesday wednesday thursday monday friday project
budget billion million dollars growth bank central inflation rate percent
workers union strike airport flights airline route tourism hotel visitors season
rain flood storm heat record temperatures desert coast fishermen harbour shipping
container traffic border crossing trade agreement talks delegation president
parliament vote election campaign party coalition court ruling judge lawyers case
police investigation report university students school teachers hospital doctors
health clinic vaccine farmers wheat harvest dates olive prices food subsidy fuel
electricity grid solar wind station capital region province district villagers
residents protest road bridge railway metro line construction company contract
investors shares stock exchange index closed higher lower analysts expect quarter
annual profit revenue output barrels refinery pipeline field drilling offshore
""")
_AR = _words("""
الوزير الحكومة الميناء النفط الغاز الأسعار السوق الصادرات المدينة المجلس المياه
محطة الوزارة المسؤولون قال يوم الثلاثاء الأربعاء الخميس الاثنين الجمعة المشروع
الميزانية مليار مليون دولار النمو البنك المركزي التضخم نسبة المئة العمال النقابة
الإضراب المطار الرحلات الطيران السياحة الفندق الزوار الموسم الأمطار الفيضانات
العاصفة الحرارة درجات الصحراء الساحل الصيادين الشحن الحاويات الحدود التجارة
الاتفاق المحادثات الوفد الرئيس البرلمان التصويت الانتخابات الحملة الحزب المحكمة
القاضي الشرطة التحقيق التقرير الجامعة الطلاب المدرسة المعلمين المستشفى الأطباء
الصحة المزارعين القمح الحصاد التمور الزيتون الغذاء الدعم الوقود الكهرباء الشبكة
""")
_FA = _words("""
وزیر دولت بندر نفت گاز قیمت بازار صادرات شهر شورا آب نیروگاه وزارت مسئولان گفت
روز سه‌شنبه چهارشنبه پنجشنبه دوشنبه جمعه پروژه بودجه میلیارد میلیون دلار رشد بانک
مرکزی تورم نرخ درصد کارگران اعتصاب فرودگاه پرواز هواپیمایی گردشگری هتل بازدیدکنندگان
فصل باران سیل طوفان گرما رکورد دما بیابان ساحل ماهیگیران کشتیرانی مرز تجارت توافق
مذاکرات هیئت رئیس‌جمهور مجلس رای انتخابات حزب دادگاه قاضی پلیس تحقیقات گزارش دانشگاه
دانشجویان مدرسه معلمان بیمارستان پزشکان سلامت کشاورزان گندم برداشت خرما زیتون غذا
""")
_TR = _words("""
bakan hükümet liman petrol gaz fiyatlar piyasa ihracat şehir belediye su santral
bakanlık yetkililer açıkladı salı çarşamba perşembe pazartesi cuma proje bütçe milyar
milyon dolar büyüme banka merkez enflasyon oran yüzde işçiler sendika grev havalimanı
uçuş havayolu turizm otel ziyaretçi sezon yağmur sel fırtına sıcaklık rekor sahil
balıkçılar denizcilik konteyner sınır ticaret anlaşma görüşmeler heyet cumhurbaşkanı
meclis oylama seçim kampanya parti mahkeme karar hakim polis soruşturma rapor üniversite
öğrenciler okul öğretmenler hastane doktorlar sağlık çiftçiler buğday hasat zeytin gıda
""")
VOCABULARY = {"en": _EN, "ar": _AR, "fa": _FA, "tr": _TR}


def _digest(*parts: object) -> int:
    material = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big")


def language_of(feed: int) -> str:
    point = _digest("lang", feed) % 100
    for language, share in LANGUAGES:
        if point < share:
            return language
        point -= share
    return "en"


def region_of(feed: int) -> str:
    regions = REGIONS[language_of(feed)]
    return regions[_digest("region", feed) % len(regions)]


def outlet_host(feed: int) -> str:
    return f"outlet-{feed}.example"


@functools.lru_cache(maxsize=200_000)
def story_text(story: str, language: str) -> tuple[str, tuple[str, ...]]:
    """A story's headline and paragraphs: deterministic word salad in its language."""
    rng = random.Random(story)
    words = VOCABULARY[language]
    title = " ".join(rng.choices(words, k=9)).capitalize()
    paragraphs = []
    for _ in range(PARAGRAPHS):
        sentence = rng.choices(words, k=WORDS_PER_PARAGRAPH)
        sentence.insert(rng.randrange(8, 40), str(rng.randrange(2, 9_999)))  # a figure
        paragraphs.append(" ".join(sentence).capitalize() + ".")
    return title, tuple(paragraphs)


def item_story(feed: int, position: int) -> tuple[str, bool]:
    """Which story a feed's stream position carries, and whether the copy is edited."""
    h = _digest("item", feed, position)
    if h % 100 < WIRE_PERCENT:
        wire = position * WIRE_STORIES_PER_STEP + (h >> 8) % WIRE_STORIES_PER_STEP
        edited = (h >> 16) % 100 < EDITED_WIRE_PERCENT
        return f"wire:{language_of(feed)}:{wire}", edited
    return f"own:{feed}:{position}", False


def item_guid(feed: int, position: int) -> str:
    return f"https://{outlet_host(feed)}/story/{position}"


def newest_position(version: int, *, items: int, new_per_change: int) -> int:
    return version * new_per_change + items - 1


def _rss_date(when: float) -> str:
    return format_datetime(datetime.fromtimestamp(when, UTC), usegmt=True)


def render_item(feed: int, position: int, published: float) -> str:
    language = language_of(feed)
    story, edited = item_story(feed, position)
    title, paragraphs = story_text(story, language)
    if edited:
        note = f"Editor's note: this report was updated by {outlet_host(feed)}."
        paragraphs = (*paragraphs, note)
    link = item_guid(feed, position)
    html = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    return (
        "<item>"
        f"<title>{escape(title)}</title>"
        f"<link>{link}?utm_source=rss&amp;utm_medium=feed</link>"
        f'<guid isPermaLink="true">{link}</guid>'
        f"<pubDate>{_rss_date(published)}</pubDate>"
        f"<dc:creator>Desk {feed % 17}</dc:creator>"
        f"<description>{escape(paragraphs[0][:280])}</description>"
        f"<content:encoded><![CDATA[{html}]]></content:encoded>"
        "</item>"
    )


def render_feed(
    feed: int,
    version: int,
    *,
    items: int,
    new_per_change: int,
    published_at: dict[int, float],
    epoch: float,
) -> bytes:
    """Version ``version`` of a feed as RSS 2.0 bytes, newest item first.

    ``published_at`` holds the real publishing time of positions published while
    the farm ran; the first version's positions are spaced ``ITEM_GAP_SECONDS``
    apart, the newest at ``epoch``."""
    newest = newest_position(version, items=items, new_per_change=new_per_change)
    language = language_of(feed)
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>Outlet {feed} ({region_of(feed)})</title>"
        f"<link>https://{outlet_host(feed)}/</link>"
        f"<description>Regional news from outlet {feed}</description>"
        f"<language>{language}</language>"
    ]
    for position in range(newest, max(newest - items, -1), -1):
        when = published_at.get(position, epoch - (items - 1 - position) * ITEM_GAP_SECONDS)
        parts.append(render_item(feed, position, when))
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")
